"""Cleaning: every seed's site chrome is gone and its sentences are kept, by generic rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.clean import clean, is_chrome, is_headline, is_prose, is_tag_line
from bot.corpus import parse_article
from tests.conftest import CORPUS

SEEDS = sorted(p for p in CORPUS.glob("*.md") if p.name != "README.md")

# Chrome scraped along with the seed articles: login prompts, related/share blocks, tag lines.
CHROME = [
    "Forgot password",
    "Remember me",
    "Log in with Twitter",
    "read also:",
    "More about Amazon",
    "More news from",
    "Latest News",
    "Top News",
    "You may also like",
    "More in Featured",
    "Comments are closed.",
    "More from our Sister Sites",
    "petya, cyber attack",
    "date 2018-06-22 Share",
    "By Ken Hanly",
]


def _article(path: Path):  # type: ignore[no-untyped-def]
    return parse_article(path, path.read_bytes())


def test_the_corpus_ships_the_five_seed_articles() -> None:
    assert len(SEEDS) == 5


@pytest.mark.parametrize("path", SEEDS, ids=lambda p: p.stem)
def test_no_chrome_survives_cleaning(path: Path) -> None:
    text = _article(path).text
    for chrome in CHROME:
        assert chrome not in text


@pytest.mark.parametrize("path", SEEDS, ids=lambda p: p.stem)
def test_every_sentence_line_is_kept_verbatim(path: Path) -> None:
    """Each line of running text (20+ words) survives unchanged; cleaning only drops lines."""
    article = _article(path)
    long_lines = [line.strip() for line in article.raw.splitlines() if len(line.split()) >= 20]
    assert long_lines
    for line in long_lines:
        assert line in article.text
    for paragraph in article.text.split("\n\n"):
        assert paragraph in article.raw


@pytest.mark.parametrize(
    "line",
    [
        "Remember meForgot\xa0password?",
        "Sign up for our newsletter",
        "Share this article",
        "Related Stories",
        "Advertisement",
        "Tags: amazon, rekognition",
        "Photo: Getty Images",
        "Comments are closed.",
        "read also: Something else entirely happened elsewhere",
        "By Jane Doe  June 22, 2018",
        "apple, tech news, cloud computing",
    ],
)
def test_generic_chrome_lines(line: str) -> None:
    assert is_chrome(line)


@pytest.mark.parametrize(
    "line",
    [
        "The letter was signed by more than 450 employees.",
        "By the time their role was understood, it was too late.",
        "“Our company should not be in the surveillance business,”",
        "Amazon, Google, and Microsoft workers have all written letters this year.",
        "More than 300 employees have signed a letter denouncing the campaign.",
    ],
)
def test_sentences_are_not_chrome(line: str) -> None:
    assert not is_chrome(line)
    assert is_prose(line)


def test_headings_and_repeated_titles_are_dropped() -> None:
    assert not is_prose("The Amazon protest follows earlier ones at Google and Microsoft")
    assert is_headline("Big News Today - Example Times", "Big News Today")
    assert not is_headline("Big News Today is what he said.", "Big News Today")
    assert not is_tag_line("Alpha, beta, and gamma went home.")


def test_clean_joins_kept_lines_as_paragraphs() -> None:
    raw = (
        "Log in\nFirst sentence of the story is here.\n\n\nSecond one follows it, as stories do.\nTop News\n"
    )
    assert clean(raw) == "First sentence of the story is here.\n\nSecond one follows it, as stories do."
