"""The hook of tests/conftest.py that marks slow tests, on tests of this suite whose needs are known."""

from __future__ import annotations

from tests import test_benchmarks, test_chunk, test_index, test_quality, test_telegram_e2e
from tests.conftest import slow_reason
from tests.test_engine_units import engine as engine_fixture
from tests.test_telegram_e2e import api as fake_bot_api_fixture


def test_pure_functions_and_the_fake_embedder_are_fast() -> None:
    assert slow_reason([test_chunk.test_passages_fit_and_cover_every_sentence], set()) is None
    fixture = engine_fixture.__wrapped__  # type: ignore[attr-defined]
    assert slow_reason([fixture], {"engine", "fake_embedder", "tmp_path"}) is None


def test_the_real_model_is_slow_by_fixture_marker_or_a_model_loaded_without_the_fake() -> None:
    assert slow_reason([test_quality.test_dev_set_meets_the_retrieval_goals], {"dev", "real_engine"})
    assert slow_reason([test_chunk.test_empty_text_gives_no_passages], set(), marked_model=True)
    assert slow_reason([test_quality.test_fixed_squad_sample], {"tmp_path"}) == "the real model"


def test_subprocesses_are_slow_also_when_imported_inside_or_run_by_a_helper() -> None:
    reading = test_index.test_reading_the_manifest_does_not_import_numpy  # `import subprocess` inside
    assert slow_reason([reading], set()) == "a subprocess"
    # measure.run_process, a helper of benchmarks/, starts the process
    assert slow_reason([test_benchmarks.test_peak_rss_is_the_childs_own], set()) == "a subprocess"


def test_the_network_stack_is_slow_through_a_fixture() -> None:
    test = test_telegram_e2e.test_start_up_publishes_commands_and_polls
    fixture = fake_bot_api_fixture.__wrapped__  # type: ignore[attr-defined]
    assert slow_reason([test], {"api", "bot"}) is None, "the test alone names no server"
    assert slow_reason([test, fixture], {"api", "bot"}) == "the network stack"
