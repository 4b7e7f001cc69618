"""README's examples are the output of the current code (made by tests/readme_examples.py)."""

from __future__ import annotations

import pytest

from bot.config import Settings
from bot.engine import Engine
from tests.readme_examples import examples, readme_examples

NAMES = ("ask", "ask-declined", "json", "telegram-private", "telegram-group")
FIX = "README.md shows output this code no longer prints: run `python -m tests.readme_examples`"


def test_every_example_block_of_the_readme_is_made_by_the_code() -> None:
    assert set(readme_examples()) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_the_readme_example_is_what_the_code_prints(
    real_settings: Settings, real_engine: Engine, name: str
) -> None:
    made = examples(real_settings, real_engine)[name]()
    assert readme_examples()[name] == made, FIX
