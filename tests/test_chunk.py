"""Chunking: sentence-aware passages that fit the model, with offsets, overlap and stable ids."""

from __future__ import annotations

import itertools

from bot.chunk import chunk
from bot.models import Article
from bot.sentences import split_sentences
from tests.fakes import HashEmbedder

count = HashEmbedder().count_tokens


def _article(text: str) -> Article:
    return Article(
        id="a1", path="a1.md", title="", outlet=None, author=None, date=None, url=None,
        raw=text, text=text, content_hash="h",
    )  # fmt: skip


STORY = "\n\n".join(
    " ".join(f"Paragraph {p} sentence {s} says something about the protest letter." for s in range(6))
    for p in range(5)
)


def test_passages_fit_and_cover_every_sentence() -> None:
    article = _article(STORY)
    passages = chunk(article, max_tokens=40, overlap=1, count_tokens=count)
    covered = {s for p in passages for s in p.sentences}
    assert covered == set(split_sentences(STORY))
    for passage in passages:
        assert count([passage.text])[0] <= 40
        assert article.text[passage.start : passage.end] == passage.text
        assert passage.sentence_texts()[0] == passage.text[: len(passage.sentence_texts()[0])]


def test_overlap_repeats_the_last_sentence_within_a_paragraph() -> None:
    one_paragraph = " ".join(f"Sentence number {i} is here now." for i in range(12))
    passages = chunk(_article(one_paragraph), max_tokens=20, overlap=1, count_tokens=count)
    assert len(passages) > 2
    for before, after in itertools.pairwise(passages):
        assert before.sentences[-1] == after.sentences[0]
    no_overlap = chunk(_article(one_paragraph), max_tokens=20, overlap=0, count_tokens=count)
    assert all(a.sentences[-1] != b.sentences[0] for a, b in itertools.pairwise(no_overlap))


def test_a_sentence_longer_than_the_limit_is_split_not_cut() -> None:
    long_sentence = " ".join(f"word{i}" for i in range(100)) + "."
    article = _article(long_sentence)
    passages = chunk(article, max_tokens=30, overlap=0, count_tokens=count)
    assert len(passages) >= 4
    assert all(count([p.text])[0] <= 30 for p in passages)
    rebuilt = " ".join(p.text for p in passages)
    assert rebuilt.split() == long_sentence.split()


def test_ids_are_stable_and_unique() -> None:
    first = chunk(_article(STORY), max_tokens=40, overlap=1, count_tokens=count)
    second = chunk(_article(STORY), max_tokens=40, overlap=1, count_tokens=count)
    assert [p.id for p in first] == [p.id for p in second]
    assert len({p.id for p in first}) == len(first)


def test_empty_text_gives_no_passages() -> None:
    assert chunk(_article(""), max_tokens=40, overlap=1, count_tokens=count) == []
