"""The benchmark runs end to end on tiny inputs (no timing asserts: the figures are for the report)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from benchmarks import measure, report
from benchmarks.run import PLANS, run
from benchmarks.synth import Generator, sentence_pool
from bot.sentences import split_sentences
from tests.redis_server import NEEDS_REDIS


def test_synthetic_articles_are_deterministic_and_split_back_into_their_sentences() -> None:
    pool = sentence_pool()
    first, second = Generator(pool), Generator(pool)
    assert first.article(7) == second.article(7) != first.article(8)
    body = first.article(3).split("---\n", 2)[2]
    sentences = [body[s.start : s.end] for s in split_sentences(body)]
    assert sentences and all(s in first.recipes for s in sentences)


def test_peak_rss_is_the_childs_own() -> None:
    # The benchmark process is large; a small child must not report the parent's memory.
    small = measure.run_process([sys.executable, "-c", "pass"], memory=True)
    touch = "x = bytearray(200_000_000)\nfor i in range(0, len(x), 4096): x[i] = 1"
    large = measure.run_process([sys.executable, "-c", touch], memory=True)
    assert 0 < small.peak_rss_mb < 100
    assert large.peak_rss_mb > small.peak_rss_mb + 150


def test_summary_and_ratio() -> None:
    stats = measure.summary([1.0, 2.0, 3.0, 4.0])
    assert stats["median"] == 2.5 and stats["min"] == 1.0 and stats["n"] == 4
    assert measure.ratio(stats, measure.summary([1.25])) == 2.0


@pytest.mark.model
def test_smoke_run_produces_every_in_process_section_and_a_table(tmp_path: Path) -> None:
    sections = ("build", "pipeline", "startup", "served", "warm", "incremental", "ann")
    results = run(PLANS["smoke"], tmp_path / "cache", sections, work_dir=tmp_path / "work")
    assert set(sections) - {"pipeline"} <= set(results)
    json.dumps(results)  # the results file is plain JSON
    assert results["build"]["real"]["passages"] > 0
    assert results["build"]["sizes"]["syn-2"]["pipeline_seconds"] > 0
    warm = results["warm"]["shipped"]
    assert warm["total"]["n"] > 0 and set(warm["stages"]) >= {"embed", "search", "fuse", "quote", "render"}
    update = results["incremental"]["2"]["runs"][0]
    assert update["new_passages"] > 0 and update["kept_faiss_ids_unchanged"]
    assert 0 < update["texts_embedded"] < results["build"]["sizes"]["syn-2"]["texts_embedded"]
    assert results["ann"]["syn-2"]["float16 exact"]["recall_at_10"] > 0.9
    assert not any(entry["imports_torch"] for entry in results["startup"].values())
    served = results["served"]
    assert served["n"] >= 3 and served["exit_codes"] == [0] and served["server_ready_s"] > 0
    assert not served["imports_torch"] and not served["imports_sentence_transformers"]
    text = report.render(results)
    assert "warm question" in text and "| target |" in text and "`ask --server` to a warm server" in text
    assert not (tmp_path / "work").exists()  # the run cleans up after itself


@NEEDS_REDIS
def test_the_replica_benchmark_times_redis_next_to_its_memory_floor(tmp_path: Path) -> None:
    from benchmarks.replicas import real_answer, state_cost
    from tests.redis_server import RedisServer

    redis = RedisServer(tmp_path / "redis").start()
    try:
        cost = state_cost(redis.url, real_answer(tmp_path), rounds=2, per_round=5)
    finally:
        redis.stop()
    assert cost["memory"]["n"] == cost["redis"]["n"] == 10
    assert cost["memory"]["median_ms"] > 0 and cost["redis"]["median_ms"] > 0  # measured, not judged
    assert cost["redis_bytes"]["answer"] > cost["redis_bytes"]["update"] > 0
