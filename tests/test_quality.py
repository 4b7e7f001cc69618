"""Answer quality with the real model: the shared dev set's goals, our own question sets, quotes that
are verbatim, corroboration, disagreement, follow-ups, and a fixed SQuAD sample."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from bot.config import Settings
from bot.evaluate import Report, evaluate, read_questions, sample
from bot.squad import FileSpans, evaluate_squad_engine, read_squad
from tests.conftest import DEV_QUESTIONS, ROOT, SHARED

DATA = ROOT / "tests" / "data"


def _report(engine, path: Path) -> Report:  # type: ignore[no-untyped-def]
    return evaluate(
        read_questions(path),
        ask=lambda q: engine.answer(q, 5),
        retrieve=lambda q: [hit.passage.text for hit in engine.retrieve(q, 10)],
        source_text=lambda p: Path(p).read_text(encoding="utf-8"),
    )


@pytest.fixture(scope="module")
def dev(real_engine) -> Report:  # type: ignore[no-untyped-def]
    if not DEV_QUESTIONS.exists():
        pytest.skip("the shared dev set is not beside this checkout")
    return _report(real_engine, DEV_QUESTIONS)


def test_dev_set_meets_the_retrieval_goals(dev: Report) -> None:
    assert dev.hit_at_3 >= 0.9  # the engine issue's floor
    assert dev.hit_at_1 >= 0.85
    assert dev.hit_at_3 >= 0.96
    assert dev.mrr_at_10 >= 0.90


def test_dev_set_quotes_and_abstention(dev: Report) -> None:
    assert dev.quote_hit_at_3 >= 0.85
    assert dev.abstention_accuracy >= 0.95
    assert dev.answerable_declined == 0
    assert dev.quote_faithfulness == 1.0
    assert dev.mean_passage_chars <= 700


def test_our_calibration_set_stays_answered_and_ranked(real_engine) -> None:  # type: ignore[no-untyped-def]
    report = _report(real_engine, DATA / "calibration-questions.jsonl")
    assert report.answerable_declined <= report.answerable // 50 + 1
    assert report.hit_at_3 >= 0.85
    assert report.mrr_at_10 >= 0.80
    assert report.quote_faithfulness == 1.0


def test_off_topic_chrome_and_odd_questions_are_declined(real_engine) -> None:  # type: ignore[no-untyped-def]
    """Our own set: o001-o025 off-topic, o056-o070 page chrome, o071-o080 odd input (o026-o055 are
    near-topic traps that a sentence embedding cannot tell from real questions; not asserted)."""
    questions = read_questions(DATA / "offtopic-questions.jsonl")
    plain = [q for q in questions if not 26 <= int(q.id[1:]) <= 55]
    declined = [real_engine.answer(q.question).abstained for q in plain]
    assert sum(declined) / len(declined) >= 0.9


def test_no_site_chrome_in_any_passage(real_engine) -> None:  # type: ignore[no-untyped-def]
    texts = " ".join(p.text for p in real_engine.index.passages)
    chrome_lines = ("Forgot password", "Log in with Twitter", "read also:", "Comments are closed")
    for chrome in chrome_lines:
        assert chrome not in texts


def test_passages_fit_the_model_without_truncation(real_engine) -> None:  # type: ignore[no-untyped-def]
    sizes = real_engine.embedder.count_tokens([p.text for p in real_engine.index.passages])
    assert max(sizes) <= real_engine.embedder.max_tokens


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_a_statement_printed_by_two_outlets_is_one_citation(real_engine) -> None:  # type: ignore[no-untyped-def]
    answer = real_engine.answer("What does Palantir run on?")
    shared = [c for c in answer.citations if len(c.sources) > 1]
    assert shared and "Palantir runs on AWS" in shared[0].quote
    for source in shared[0].sources:
        assert _squash(shared[0].quote) in _squash(Path(source.path).read_text(encoding="utf-8"))
    assert "reported by" in answer.summary


def test_the_word_run_filter_never_hides_shared_wording(real_engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # cite._word_runs skips the character match where no shared span is possible, and
    # cite._longest_common skips difflib where one text holds the other; with neither shortcut,
    # every sentence against every passage must give the same result.
    from difflib import SequenceMatcher

    from bot import cite
    from bot.models import Hit
    from bot.quote import Quote

    passages = list(real_engine.index.passages)
    hits = [
        Hit(passage=p, row=i, score=0, dense=0, sentence=0, lexical=0, coverage=0)
        for i, p in enumerate(passages)
    ]
    quotes = [Quote(t, 0, len(t), 0.0) for p in passages for t in p.sentence_texts()]
    filtered = [cite.shared_wording(q, h) for q in quotes for h in hits]
    monkeypatch.setattr(cite, "_word_runs", lambda text: frozenset({()}))

    def difflib_only(a: str, b: str) -> tuple[int, int]:
        match = SequenceMatcher(None, a, b, autojunk=False).find_longest_match(0, len(a), 0, len(b))
        return match.a, match.a + match.size

    monkeypatch.setattr(cite, "_longest_common", difflib_only)
    unfiltered = [cite.shared_wording(q, h) for q in quotes for h in hits]
    assert filtered == unfiltered
    assert sum(r is not None for r in filtered) > len(quotes)  # each matches itself, and some others


def test_different_figures_for_one_fact_are_both_shown(real_engine) -> None:  # type: ignore[no-untyped-def]
    answer = real_engine.answer("How many Google employees signed the letter about Project Maven?")
    quotes = " ".join(c.quote for c in answer.citations)
    assert "3,100" in quotes and "4,000" in quotes
    assert answer.notes and "different figures" in answer.summary


def test_a_follow_up_is_read_with_the_question_before(real_engine) -> None:  # type: ignore[no-untyped-def]
    first = real_engine.answer("Who wrote a letter to Jeff Bezos?")
    follow = real_engine.answer("How many signed it?", previous=first)
    assert "450" in follow.citations[0].quote
    new_topic = real_engine.answer("What is the speed of light?", previous=follow)
    assert new_topic.abstained and new_topic.query == "What is the speed of light?"


def test_a_follow_up_naming_another_company_answers_about_it(real_engine) -> None:  # type: ignore[no-untyped-def]
    first = real_engine.answer("How many Google employees signed the letter?")
    follow = real_engine.answer("what about Microsoft?", previous=first)
    assert "Microsoft" in follow.query and "Google" not in follow.query
    assert "300" in follow.citations[0].quote
    assert not any("3,100" in c.quote or "4,000" in c.quote for c in follow.citations[:1])


def test_a_number_question_gets_its_answer_words(real_engine) -> None:  # type: ignore[no-untyped-def]
    answer = real_engine.answer("How many Amazon employees signed the letter?")
    assert answer.answer_span is not None and answer.answer_span.text == "More than 450"
    assert answer.answer_span.text in answer.citations[0].quote


def test_the_held_out_casual_set_keeps_its_measured_quality(real_engine) -> None:  # type: ignore[no-untyped-def]
    """tests/data/casual-test.jsonl was never fitted on: the figures in docs/QUALITY.md, less a margin."""
    report = _report(real_engine, DATA / "casual-test.jsonl")
    assert report.hit_at_1 >= 0.72 and report.hit_at_3 >= 0.88 and report.mrr_at_10 >= 0.80
    assert report.answerable_declined <= 6
    assert report.quote_faithfulness == 1.0
    assert report.by_kind["off-topic"]["declined"] == 1.0
    assert report.by_kind["chrome"]["declined"] >= 0.7
    assert report.by_kind["false-premise"]["declined_or_contradicted"] >= 0.45  # 8 of 15 measured
    assert report.by_kind["casual"]["hit_at_1"] >= 0.8


SQUAD = SHARED / "external" / "squad"
SQUAD_ARTICLES = ("apollo-program.txt", "black-death.txt", "huguenot.txt")


@pytest.mark.skipif(not SQUAD.exists(), reason="the shared SQuAD kit is not beside this checkout")
def test_fixed_squad_sample(tmp_path: Path) -> None:
    """Text nobody here wrote: 3 kit articles through the normal pipeline, 150 fixed questions."""
    from bot.startup import open_engine

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in SQUAD_ARTICLES:
        shutil.copy(SQUAD / "articles" / name, corpus / name)
    engine = open_engine(Settings(corpus=corpus, index=tmp_path / "index"))
    questions = sample([q for q in read_squad(SQUAD) if q.article in SQUAD_ARTICLES], 150)
    report = evaluate_squad_engine(engine, questions)
    print(json.dumps(report.to_dict()))
    assert report.r_at_1 >= 0.70
    assert report.r_at_5 >= 0.93
    assert report.answer_recall_at_5 >= 0.93


def test_file_spans_map_passages_back_to_the_file(tmp_path: Path) -> None:
    article = tmp_path / "a.md"
    body = "Log in\nFirst real sentence of the story is here.\nShare\nSecond one.\n"
    article.write_text("---\ntitle: T\n---\n" + body)
    spans = FileSpans()
    text = article.read_text()
    clean_second = len("First real sentence of the story is here.") + 2
    start, end = spans.span(str(article), clean_second, clean_second + len("Second one."))
    assert text[start:end] == "Second one."
