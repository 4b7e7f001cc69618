"""Readable article labels: the title, else the article's own heading, else its first words."""

from __future__ import annotations

import json

from bot.config import Settings
from bot.label import article_label, first_words
from tests.test_cli import run, tree

UNTITLED_WITH_HEADING = "001_8b94165fc8dcc081"
UNTITLED_WITHOUT_HEADING = "002_76596d0b50a12cd5"


def test_the_title_comes_first() -> None:
    raw = "Another heading\n\nSome text of the article."
    assert article_label("Workers protest", raw) == "Workers protest"


def test_an_untitled_article_is_labelled_by_its_own_first_heading() -> None:
    raw = "Log in with Twitter\n\nAmazon employees\n\nAmazon employees are protesting the sale.\n"
    assert article_label(None, raw) == "Amazon employees"


def test_without_a_heading_the_first_words_of_the_text() -> None:
    # " date 2018-06-22 Share" is scraped page furniture, not a heading: it starts in lower case.
    raw = (
        " date 2018-06-22 Share\n\nIn the wake of protests from Google and Microsoft workers, "
        "who objected to their employers’ contracts, employees at Amazon are circulating a letter.\n"
    )
    assert article_label(None, raw) == "In the wake of protests from Google and Microsoft workers…"


def test_a_heading_after_the_text_began_is_not_the_label() -> None:
    raw = "The letter was sent on Friday to the company's chief executive.\n\nRelated Stories\n"
    assert article_label(None, raw) == "The letter was sent on Friday to the company's chief…"


def test_first_words_are_cut_at_a_word() -> None:
    assert first_words("short text") == "short text"
    assert first_words("word " * 30, limit=22) == "word word word word…"


def test_sources_and_citations_show_labels_and_the_front_matter_stays_honest(built: Settings) -> None:
    before = tree(built.corpus)
    listing = run(built, "sources")
    assert listing.exit_code == 0, listing.output
    assert "untitled" not in listing.stdout
    assert "Amazon employees\n" in listing.stdout
    assert "In the wake of protests from Google and Microsoft workers… — 2018-06-22\n" in listing.stdout
    answer = run(built, "ask", "-k", "5", "Who wrote to Jeff Bezos?")
    assert answer.exit_code == 0, answer.output
    assert "untitled" not in answer.stdout
    # The label is for display: the files and the JSON contract keep the title the article shows.
    data = json.loads(run(built, "ask", "--json", "-k", "20", "Palantir runs on AWS").stdout)
    titles = {s["id"]: s["title"] for c in data["citations"] for s in c["sources"]}
    assert titles.get(UNTITLED_WITHOUT_HEADING, "") == ""
    assert UNTITLED_WITHOUT_HEADING in titles
    assert tree(built.corpus) == before
