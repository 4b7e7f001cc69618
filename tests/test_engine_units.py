"""The engine's stages one by one, with the fake embedder and hand-made passages: search fusion, the
quote, corroboration and disagreement, follow-ups, lexical matching and abstention. Milliseconds
each: these are the fast lane's view of what the quality tests check with the real model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from bot import store
from bot.cite import Group, conflicting_sentence, disagree, figures, shared_wording
from bot.config import Settings
from bot.engine import ABSTENTION, NOT_COVERED, RELATED, Abstention, Engine
from bot.followup import is_followup, resolve_followup
from bot.indexer import update_from_settings
from bot.lexical import LexicalIndex, coverage, terms
from bot.models import Answer, Hit, Passage, Sentence
from bot.quote import Quote, choose_quote
from bot.render import answer_dict, answer_markup
from bot.search import FusionWeights, hybrid_search
from tests.fakes import FAKE_MODEL, HashEmbedder

# --- hand-made passages -------------------------------------------------------------------------


def passage(*sentences: str, article: str = "a", offset: int = 0) -> Passage:
    """A passage of the given sentences, one space apart, starting `offset` characters into its article."""
    text = " ".join(sentences)
    spans, at = [], offset
    for sentence in sentences:
        spans.append(Sentence(at, at + len(sentence)))
        at += len(sentence) + 1
    return Passage(f"{article}-{offset}", article, offset, offset + len(text), text, tuple(spans))


def hit(p: Passage, sentence: float = 0.0, coverage: float = 0.0, score: float = 1.0) -> Hit:
    return Hit(passage=p, row=0, score=score, dense=0.0, sentence=sentence, lexical=0.0, coverage=coverage)


# --- the quote ----------------------------------------------------------------------------------


def test_the_quote_is_the_best_scored_sentence_with_its_offsets() -> None:
    p = passage("The weather was fine that day.", "Over 450 employees signed the letter to Bezos.", offset=40)
    quote = choose_quote(p, [0.1, 0.9])
    assert quote.text == "Over 450 employees signed the letter to Bezos."
    assert (quote.start, quote.end) == (p.sentences[1].start, p.sentences[1].end)
    assert quote.score == pytest.approx(0.9)


def test_a_short_best_sentence_is_quoted_with_the_next() -> None:
    p = passage(
        "Intro sentence that nobody wants quoted here.", "They added:", "We refuse to build it at all."
    )
    quote = choose_quote(p, [0.0, 0.8, 0.5])
    assert quote.text == "They added: We refuse to build it at all."


def test_quotation_marks_left_open_by_the_sentence_split_are_dropped() -> None:
    p = passage("“We refuse to contribute to tools that violate human rights.", "Then the letter went on.")
    quote = choose_quote(p, [1.0, 0.0])
    assert quote.text == "We refuse to contribute to tools that violate human rights."
    assert p.text[quote.start - p.start : quote.end - p.start] == quote.text, "still verbatim"


def test_a_passage_without_sentences_is_quoted_whole() -> None:
    p = Passage("x", "a", 5, 9, "Text", ())
    assert choose_quote(p, []) == Quote("Text", 5, 9, 0.0)


# --- corroboration and disagreement -------------------------------------------------------------

LETTER = "We also know that Palantir runs on AWS and helps ICE target immigrants."


def test_the_same_statement_in_another_outlet_is_shared_wording_verbatim_in_both() -> None:
    quote = Quote(f"“{LETTER}” the letter reads.", 0, 0, 0.5)
    other = hit(passage("Unrelated opening words here.", f"The letter says: {LETTER}", article="b"))
    shared = shared_wording(quote, other)
    assert shared is not None
    assert shared.text == LETTER
    assert shared.text in quote.text and shared.text in other.passage.text


def test_a_stock_phrase_in_common_is_not_corroboration() -> None:
    quote = Quote("Amazon did not respond to a request for comment on the letter by press time.", 0, 0, 0.5)
    reached = "A spokesperson, reached in Seattle on Friday, did not respond to a request for comment either."
    other = hit(passage(reached, article="b"))
    assert shared_wording(quote, other) is None


def test_different_figures_for_one_fact_disagree() -> None:
    a = "More than 450 employees signed the letter to Jeff Bezos, the letter said."
    b = "About 100 employees signed the letter to Jeff Bezos, the letter said."
    assert figures("3,100 workers and 3100 more") == {"3100"}
    assert disagree(a, b)
    assert not disagree(a, a), "the same figures agree"
    assert not disagree(a, "About 100 people attended the Seattle march on Monday."), "another fact"


def test_a_conflicting_sentence_is_found_in_another_article_only() -> None:
    a = "More than 450 employees signed the letter to Jeff Bezos, the letter said."
    b = "About 100 employees signed the letter to Jeff Bezos, the letter said."
    group = Group(Quote(a, 0, len(a), 0.5), [hit(passage(a, article="first"))])
    same_article = hit(passage("Intro words of no interest.", b, article="first"))
    other_article = hit(passage("Intro words of no interest.", b, article="second"))
    assert conflicting_sentence(group, [same_article]) is None
    found = conflicting_sentence(group, [same_article, other_article])
    assert found is not None and found[0] is other_article and found[1].text == b


# --- follow-ups ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("How many signed it?", True),
        ("what about Microsoft?", True),
        ("And their demands?", True),
        ("Who wrote the letter to Jeff Bezos?", False),
        ("What did it say about Palantir, ICE, Rekognition and police departments?", False),
    ],
)
def test_a_follow_up_points_back_and_says_little_of_its_own(question: str, expected: bool) -> None:
    assert is_followup(question) is expected


def test_a_question_without_one_before_is_searched_alone() -> None:
    assert resolve_followup("How many signed it?", None) == "How many signed it?"
    assert resolve_followup("How many signed it?", "Who wrote the letter?") == (
        "Who wrote the letter? How many signed it?"
    )


# --- lexical matching ---------------------------------------------------------------------------


def test_terms_are_stemmed_content_words_without_question_words() -> None:
    assert terms("How many employees signed the letter?") == ["employe", "sign", "letter"]
    assert terms("What did they say?") == []


def test_coverage_is_the_share_of_question_words_in_a_text() -> None:
    question = frozenset(terms("Which employees signed the letter?"))
    assert coverage(question, "The letter was signed by 450 employees.") == 1.0
    assert coverage(question, "The letter was long.") == pytest.approx(1 / 3)
    assert coverage(frozenset(), "anything") == 0.0


def test_bm25_ranks_the_passage_with_the_rare_word_first_and_round_trips(tmp_path: Path) -> None:
    texts = [
        "Employees wrote a letter about the company.",
        "The company sells Rekognition to police in Orlando.",
        "Employees of the company met on Monday.",
    ]
    index = LexicalIndex.build(texts)
    scores = index.scores("Which city's police use Rekognition?")
    assert int(np.argmax(scores)) == 1 and scores[0] == 0 and scores[2] == 0
    assert not index.scores("zebra tuba").any(), "unknown words score nothing"
    index.save(tmp_path)
    assert np.array_equal(
        LexicalIndex.load(tmp_path).scores("Rekognition police"), index.scores("Rekognition police")
    )
    assert index.document_shares()["compani"] == 1.0


# --- abstention (the first gate) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("closest", "overlap", "declined"),
    [
        (0.8, 0.0, False),  # very close in meaning alone
        (0.3, 0.2, False),  # fairly close and sharing words
        (0.3, 0.0, True),  # fairly close, no words in common
        (0.2, 1.0, True),  # words in common, nothing close in meaning
    ],
)
def test_the_first_gate_needs_a_close_sentence(closest: float, overlap: float, declined: bool) -> None:
    gate = Abstention(sentence_alone=0.76, sentence_with_words=0.28, words=0.1)
    assert (
        gate.declines([hit(passage("Some sentence here."), sentence=closest, coverage=overlap)]) is declined
    )


def test_the_first_gate_reads_meaning_and_words_from_different_passages() -> None:
    close = hit(passage("Close in meaning."), sentence=0.3, coverage=0.0)
    wordy = hit(passage("Sharing the words."), sentence=0.1, coverage=0.5)
    assert not ABSTENTION.declines([close, wordy])
    assert ABSTENTION.declines([])


# --- the engine over a small index built with the fake embedder ---------------------------------

ARTICLES = {
    "letter": (
        "Letter to Bezos",
        "Over 450 Amazon employees signed a letter to Jeff Bezos. The letter asks Amazon to stop selling "
        "Rekognition to police. We also know that Palantir runs on AWS and helps ICE target immigrants.",
    ),
    "reprint": (
        "The letter, reprinted",
        "A second outlet printed the letter too. It reads: We also know that Palantir runs on AWS and "
        "helps ICE target immigrants. The employees did not give their names.",
    ),
    "tubas": (
        "Zebra festival",
        "Four hundred marching tubas played at the zebra festival in Orlando. Nobody mentioned Amazon.",
    ),
}


@pytest.fixture
def engine(tmp_path: Path, fake_embedder: HashEmbedder) -> Engine:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, (title, body) in ARTICLES.items():
        (corpus / f"{name}.md").write_text(f'---\ntitle: "{title}"\n---\n{body}\n', encoding="utf-8")
    settings = Settings(corpus=corpus, index=tmp_path / "index", model=FAKE_MODEL)
    update_from_settings(settings, fake_embedder)
    return Engine(store.load(settings.index, FAKE_MODEL), fake_embedder)


def test_fusion_is_the_weighted_sum_of_the_four_signals(engine: Engine, fake_embedder: HashEmbedder) -> None:
    question = "Does Palantir run on AWS?"
    weights = FusionWeights()
    hits = hybrid_search(engine.index, fake_embedder.encode([question])[0], question, 5, weights)
    assert hits and [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    for h in hits:
        fused = weights.passage * h.dense + weights.sentence * h.sentence
        fused += weights.lexical * h.lexical + weights.coverage * h.coverage
        assert h.score == pytest.approx(fused, abs=1e-5)
    assert max(h.lexical for h in hits) == pytest.approx(1.0), "BM25 is scaled by its best candidate"
    vector = fake_embedder.encode([hits[0].passage.text])[0]
    query = fake_embedder.encode([question])[0]
    assert hits[0].dense == pytest.approx(float(vector @ query), abs=1e-4), "dense is the cosine"
    assert "Palantir" in hits[0].passage.text


def test_each_signal_alone_ranks_by_itself(engine: Engine, fake_embedder: HashEmbedder) -> None:
    question = "zebra festival tubas"
    vector = fake_embedder.encode([question])[0]
    lexical_only = FusionWeights(passage=0, sentence=0, lexical=1, coverage=0)
    (top,) = hybrid_search(engine.index, vector, question, 1, lexical_only)
    assert top.passage.article_id == "tubas" and top.score == pytest.approx(1.0)
    dense_only = FusionWeights(passage=1, sentence=0, lexical=0, coverage=0)
    ranked = hybrid_search(engine.index, vector, question, 3, dense_only)
    assert [h.dense for h in ranked] == sorted((h.dense for h in ranked), reverse=True)


def test_a_statement_printed_twice_is_one_citation_with_both_sources(engine: Engine) -> None:
    answer = engine.answer("Does Palantir run on AWS and help ICE?", k=3)
    assert not answer.abstained, answer
    first = answer.citations[0]
    assert "Palantir runs on AWS" in first.quote
    assert {s.id for s in first.sources} == {"letter", "reprint"}
    assert answer.summary.startswith(f"“{first.quote}” [1] (reported by 2 sources)")
    assert all("Palantir runs on AWS" not in c.quote for c in answer.citations[1:]), "not cited twice"


def test_an_off_topic_question_is_declined(engine: Engine) -> None:
    answer = engine.answer("What is the boiling point of mercury in kelvin?")
    assert answer.abstained and answer.summary == NOT_COVERED and answer.citations == ()


def test_a_question_the_reader_declines_is_shown_the_closest_passages_apart(engine: Engine) -> None:
    engine.reader = dataclasses.replace(engine.reader, answer_threshold=1.01)  # the reader declines all
    answer = engine.answer("Does Palantir run on AWS and help ICE?", k=3)
    assert answer.abstained and answer.summary == NOT_COVERED and answer.citations == ()
    assert 1 <= len(answer.related) <= RELATED
    assert "Palantir runs on AWS" in answer.related[0].quote
    assert {s.id for s in answer.related[0].sources} == {"letter", "reprint"}
    data = answer_dict(answer)
    assert data["citations"] == [] and data["related"][0]["quote"] == answer.related[0].quote
    assert "Closest the articles come" in answer_markup(answer)
    # the first gate's refusals (off topic) get none: nothing there is close
    assert engine.answer("What is the boiling point of mercury in kelvin?").related == ()


def test_a_follow_up_is_searched_with_the_question_before(engine: Engine) -> None:
    asked = "Who wrote to Jeff Bezos?"
    previous = Answer(question=asked, abstained=False, summary="", citations=(), query=asked)
    answer = engine.answer("How many signed it?", previous=previous)
    assert answer.question == "How many signed it?"
    assert answer.query == "Who wrote to Jeff Bezos? How many signed it?"
    alone = engine.answer("How many signed it?")
    assert alone.query == "How many signed it?"
