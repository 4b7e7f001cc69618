"""The reader's parts, fast: answer types and spans, focus terms, the corpus vocabulary, word
neighbours, the fitted model file, and follow-ups that swap their subject. No real model here."""

from __future__ import annotations

import json
from typing import ClassVar

import numpy as np
import pytest

from bot.answer_type import Wanted, candidates, gives_reason, wanted
from bot.followup import resolve_followup
from bot.neighbours import WordVectors, neighbour_coverage
from bot.reader import FEATURES, Reading, Vocabulary, answer_span, coverage, read_question, specificity
from bot.reader_model import DECISION_FEATURES, WEIGHTS_FILE, Logistic, ReaderModel

CORPUS_TERMS = {"employe": 0.5, "sign": 0.3, "letter": 0.4, "googl": 0.2, "microsoft": 0.2, "resign": 0.1}


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("How many employees signed the letter?", Wanted.NUMBER),
        ("how much is the contract worth", Wanted.NUMBER),
        ("When did the Google employees resign?", Wanted.DATE),
        ("whens the letter from", Wanted.DATE),
        ("what year did palantir start working with ice", Wanted.DATE),
        ("Who did they write to?", Wanted.NAME),
        ("which company runs on aws", Wanted.NAME),
        ("why are amazon workers protesting", Wanted.REASON),
        ("what did the aclu test find", Wanted.OTHER),
    ],
)
def test_the_answer_type_comes_from_the_wording(question: str, kind: Wanted) -> None:
    assert wanted(question) is kind


def test_number_candidates_keep_their_modifiers() -> None:
    sentence = "More than 450 employees signed a letter addressed to CEO Jeff Bezos."
    assert [s.text for s in candidates(sentence, Wanted.NUMBER, "how many signed")] == ["More than 450"]
    assert [
        s.text for s in candidates("In May, about a dozen employees resigned.", Wanted.NUMBER, "how many")
    ] == ["about a dozen"]


def test_an_amount_keeps_its_currency_sign() -> None:
    worth = "how much is the contract worth"
    assert [s.text for s in candidates("It is worth $41 million.", Wanted.NUMBER, worth)] == ["$41 million"]
    assert [s.text for s in candidates("It is worth about €3.", Wanted.NUMBER, worth)] == ["about €3"]


def test_a_candidate_the_question_already_holds_is_not_an_answer() -> None:
    sentence = "Palantir has been working with ICE since 2014 when Obama was president."
    names = [s.text for s in candidates(sentence, Wanted.NAME, "who was president when palantir started")]
    assert "Obama" in names and "Palantir" not in names
    assert [s.text for s in candidates(sentence, Wanted.DATE, "in 2014?")] == []


def test_names_lose_the_question_words_at_their_edges() -> None:
    sentence = "The letter is addressed to CEO Jeff Bezos and other executives."
    assert [s.text for s in candidates(sentence, Wanted.NAME, "who is the ceo")] == ["Jeff Bezos"]


def test_dates_are_found_in_their_common_shapes() -> None:
    found = candidates("The game was played on February 7, 2016, at Levi's Stadium.", Wanted.DATE, "when?")
    assert [s.text for s in found] == ["February 7, 2016"]


def test_a_reason_is_a_cause_or_a_purpose() -> None:
    assert gives_reason("They protested because the software violates human rights.")
    assert not gives_reason("The software is sold to police departments.")


def test_specific_words_weigh_more_than_common_ones() -> None:
    assert specificity("palantir") > specificity("employees") > specificity("the")
    assert specificity("zqxwvprt") == 1.0


def test_focus_terms_are_looked_up_in_the_corpus_with_typos_forgiven() -> None:
    vocabulary = Vocabulary(CORPUS_TERMS)
    question = read_question("how many employes signd the leter at uber", vocabulary)
    stems = {t.stem: t.in_corpus for t in question.focus}
    assert stems["employe"] and stems["letter"]
    assert stems["uber"] is False
    assert 0 < question.absent < 1
    assert question.wanted is Wanted.NUMBER


def test_missing_counts_what_the_corpus_has_elsewhere_but_the_text_lacks() -> None:
    vocabulary = Vocabulary(CORPUS_TERMS)
    question = read_question("How many Microsoft employees resigned?", vocabulary)
    found, missing = coverage(question, "About a dozen Google employees resigned.")
    assert missing == pytest.approx(specificity("microsoft"))
    assert 0 < found < 1
    assert coverage(question, "Ten Microsoft employees resigned.") == (1.0, 0.0)


def test_the_answer_span_is_the_candidate_nearest_the_question_words() -> None:
    vocabulary = Vocabulary(CORPUS_TERMS)
    question = read_question("how many employees signed the letter", vocabulary)
    sentence = "In 2017, 19 shareholders wrote; this week more than 450 employees signed a letter."
    span = answer_span(question, sentence)
    assert span is not None and span.text == "more than 450"
    assert sentence[span.start : span.end] == span.text
    assert answer_span(read_question("what did they find", vocabulary), sentence) is None


class _Words:
    """Single-word vectors where listed synonyms coincide and every other word is its own axis."""

    synonyms: ClassVar[dict[str, str]] = {"staffers": "employees", "cops": "police"}

    def __init__(self) -> None:
        self.axes: dict[str, int] = {}
        self.calls = 0

    def __call__(self, words: list[str]) -> np.ndarray:
        self.calls += 1
        rows = np.zeros((len(words), 64))
        for i, word in enumerate(words):
            key = self.synonyms.get(word, word)
            rows[i, self.axes.setdefault(key, len(self.axes) % 64)] = 1.0
        return rows


def _reading(text: str, cosine: float, focus: float) -> Reading:
    features = [0.0] * len(FEATURES)
    features[FEATURES.index("sentence_cosine")] = cosine
    features[FEATURES.index("sentence_focus")] = focus
    return Reading(hit=0, sentence=0, text=text, probability=0.5, features=tuple(features))


def test_a_word_of_like_meaning_stands_in_for_a_missing_one() -> None:
    vocabulary = Vocabulary({"employe": 0.5, "sign": 0.3, "letter": 0.4, "polic": 0.2})
    words = WordVectors(_Words())
    question = read_question("how many staffers signed", vocabulary)
    readings = [_reading("More than 450 employees signed a letter.", 0.6, 0.5)]
    found, missing, absent = neighbour_coverage(question, readings, [readings[0].text], words)
    assert found == pytest.approx(1.0) and missing == 0.0 and absent == 0.0
    question = read_question("how many uber drivers signed", vocabulary)
    found, missing, absent = neighbour_coverage(question, readings, [readings[0].text], words)
    assert found < 1.0 and absent > 0.0


def test_word_vectors_are_encoded_once() -> None:
    encode = _Words()
    words = WordVectors(encode)
    first = words(["police", "letter"])
    again = words(["letter", "police"])
    assert encode.calls == 1
    assert all(np.array_equal(first[w], again[w]) for w in first)


def test_the_shipped_model_file_matches_the_features_and_says_how_it_was_made() -> None:
    data = json.loads(WEIGHTS_FILE.read_text(encoding="utf-8"))
    model = ReaderModel.load()
    assert tuple(data["sentence"]["features"]) == FEATURES
    assert tuple(data["decision"]["features"]) == DECISION_FEATURES
    assert data["fitted"]["command"].startswith("python -m bot.fit_reader")
    assert 0 < model.answer_threshold < 1


def test_a_model_fitted_for_other_features_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(WEIGHTS_FILE.read_text(encoding="utf-8"))
    data["sentence"]["features"] = ["something_else", *data["sentence"]["features"][1:]]
    path = tmp_path / "reader.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match="fit_reader"):
        ReaderModel.load(path)


def test_logistic_probabilities_rise_with_a_positive_weight() -> None:
    model = Logistic(("a", "b"), (0.0, 0.0), (1.0, 1.0), (2.0, 0.0), 0.0)
    low, high = model(np.asarray([[-1.0, 5.0], [1.0, 5.0]]))
    assert low < 0.5 < high
    assert Logistic.neutral(("a",))(np.asarray([[3.0]]))[0] == 0.5


def _like(subject: str, words: list[str]) -> list[float]:
    companies = {"google", "microsoft", "amazon"}
    return [0.7 if w.lower() in companies and subject.lower() in companies else 0.1 for w in words]


def test_a_follow_up_that_names_a_new_subject_swaps_it_in() -> None:
    previous = "How many Google employees signed the letter?"
    assert (
        resolve_followup("what about Microsoft?", previous, _like)
        == "How many Microsoft employees signed the letter?"
    )
    assert (
        resolve_followup("and microsoft", previous, _like)
        == "How many microsoft employees signed the letter?"
    )


def test_a_follow_up_with_nothing_to_swap_is_read_with_the_question_before() -> None:
    previous = "How many Google employees signed the letter?"
    assert resolve_followup("what about the pizza?", previous, _like) == f"{previous} what about the pizza?"
    assert resolve_followup("how many signed it?", previous, _like) == f"{previous} how many signed it?"
    assert resolve_followup("Who is Jeff Bezos?", previous, _like) == "Who is Jeff Bezos?"
