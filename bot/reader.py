"""The reader: does a candidate sentence answer the question, or only sound like it does?

Retrieval finds sentences *about* the question's subject. The reader checks each candidate sentence
against what the question asks:

- **focus coverage**: the question's specific words (names, rare words, weighted by how rare they
  are in English, from `wordfreq`) must appear in the sentence or its passage. "How many Microsoft
  employees resigned?" is not answered by "about a dozen [Google] employees resigned";
- **absent terms**: a specific word that occurs nowhere in the corpus ("Uber", "Whole Foods") is
  strong evidence that the articles don't cover the question;
- **answer type**: a "how many" question needs a number the question doesn't already hold, "who" a
  name, "when" a date, "why" a reason (`bot.answer_type`);
- the sentence's and passage's cosine similarity, relative to the best candidate's, and BM25.

Two logistic regressions, fitted by `python -m bot.fit_reader` on our own question sets and the
first half of the SQuAD kit and shipped as `bot/reader.json`, combine them: one gives each sentence
a probability of answering (which passage comes first, which sentence is quoted), the other, over
the best sentence's verdict and question-level signals, whether to answer at all.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bot.answer_type import Span, Wanted, candidates, gives_reason, wanted
from bot.lexical import stem, stop_words, term_set
from bot.models import Hit

if TYPE_CHECKING:
    from bot.reader_model import ReaderModel

FEATURES = (
    "sentence_cosine",
    "passage_cosine",
    "cosine_below_best",
    "sentence_focus",
    "passage_focus",
    "sentence_missing",
    "passage_missing",
    "absent_from_corpus",
    "type_supplied",
    "type_missing",
    "bm25",
    "passage_subject",
)

WORD = re.compile(r"[\w']+")
# Specificity falls from 1 to 0 as a word's English frequency rises from 1 to this on the Zipf scale
# (3 = once in a million words, 7 = "the").
_RAREST_ZIPF = 7.0
# A question word missing from the corpus is matched to a corpus word this close in spelling
# (rapidfuzz ratio, 0–100): casual questions carry typos ("palantr").
_TYPO_SCORE = 84
_TYPO_MIN_LENGTH = 5
# The corpus's subject: terms in at least this share of passages, and not common English words.
_SUBJECT_SHARE = 0.25
_SUBJECT_SPECIFICITY = 0.3


@dataclass(frozen=True)
class FocusTerm:
    """A content word of the question: its stem as indexed, and how specific it is (0–1)."""

    stem: str
    weight: float
    in_corpus: bool
    word: str = ""  # as the question spells it (for finding words of like meaning)


@dataclass(frozen=True)
class Question:
    """What the reader needs to know about a question, worked out once."""

    text: str
    wanted: Wanted
    focus: tuple[FocusTerm, ...]
    absent: float  # share of the focus weight that occurs nowhere in the corpus
    subject: dict[str, float]  # the corpus's subject terms the question does not name, by weight


@dataclass(frozen=True)
class Reading:
    """The reader's verdict on one candidate sentence."""

    hit: int  # position in the hits
    sentence: int  # index of the sentence in its passage
    text: str
    probability: float
    features: tuple[float, ...]


@functools.lru_cache(maxsize=16384)
def specificity(word: str) -> float:
    """How specific a word is, 0 (very common) to 1 (rare or unknown), from its English frequency."""
    return _specificity((word,))


@functools.lru_cache(maxsize=16384)
def stem_specificity(term: str) -> float:
    """`specificity` of an indexed (stemmed) term, read as its most common English form."""
    plural_y = term[:-1] + "y" if term.endswith("i") else term
    return _specificity((term, term + "e", term + "s", term + "es", term + "ed", plural_y))


def _specificity(forms: tuple[str, ...]) -> float:
    from wordfreq import zipf_frequency

    zipf = max(zipf_frequency(form, "en") for form in forms)
    return min(1.0, max(0.0, (_RAREST_ZIPF - zipf) / (_RAREST_ZIPF - 1.0)))


def read_question(text: str, vocabulary: Vocabulary) -> Question:
    """The question's answer type and its focus terms, each looked up in the corpus vocabulary."""
    stop = stop_words()
    focus: dict[str, FocusTerm] = {}
    for word in WORD.findall(text.lower().replace("’", "'")):
        word = word.strip("'")
        if not word or word in stop:
            continue
        term = stem(word)
        known = vocabulary.match(term)
        weight = specificity(word)
        if known and known != term:  # a typo of a corpus word: as specific as the word it means
            term = known
        if term not in focus or focus[term].weight < weight:
            focus[term] = FocusTerm(term, weight, known is not None, word)
    terms = tuple(focus.values())
    total = sum(t.weight for t in terms)
    absent = sum(t.weight for t in terms if not t.in_corpus) / total if total else 0.0
    named = {t.stem for t in terms}
    subject = {t: w for t, w in vocabulary.subject.items() if t not in named}
    return Question(text=text, wanted=wanted(text), focus=terms, absent=absent, subject=subject)


class Vocabulary:
    """The corpus's indexed terms, with a spelling-tolerant lookup for words a question misspells,
    and the corpus's own subject: specific terms that a large share of its passages hold.

    A question that names no subject is about the corpus's: "how many employees signed?" asked of
    articles about an Amazon protest means Amazon's employees, not Microsoft's, even where a
    passage about Microsoft matches the words as well.
    """

    def __init__(self, shares: dict[str, float]) -> None:
        self._terms = frozenset(shares)
        subject = {t: share * stem_specificity(t) for t, share in shares.items() if share >= _SUBJECT_SHARE}
        self.subject = {t: w for t, w in subject.items() if stem_specificity(t) >= _SUBJECT_SPECIFICITY}

    @functools.cached_property
    def _spellings(self) -> list[str]:
        # Sorted (ties go to the same word every time), and only once a question has a word the
        # corpus lacks: a large corpus has hundreds of thousands of terms to sort.
        return sorted(self._terms)

    def match(self, term: str) -> str | None:
        """The term itself when indexed, else the closest indexed spelling, else None."""
        if term in self._terms:
            return term
        if len(term) < _TYPO_MIN_LENGTH or term.isdigit():
            return None
        from rapidfuzz import fuzz, process

        found = process.extractOne(term, self._spellings, scorer=fuzz.ratio, score_cutoff=_TYPO_SCORE)
        return found[0] if found else None


def coverage(question: Question, text: str) -> tuple[float, float]:
    """Weighted share of the question's focus found in the text, and the weight of the most
    specific focus term it lacks (what "Microsoft" is to a sentence about Google)."""
    if not question.focus:
        return 0.0, 0.0
    have = term_set(text)
    total = sum(t.weight for t in question.focus)
    found = sum(t.weight for t in question.focus if t.stem in have)
    # Terms the corpus lacks altogether are `absent_from_corpus`'s to weigh; here, what this text
    # lacks that the corpus has elsewhere (Microsoft, in a sentence about Google).
    missing = max((t.weight for t in question.focus if t.in_corpus and t.stem not in have), default=0.0)
    return found / total if total else 0.0, missing


def focus_weight(question: Question) -> float:
    """How much specific content the question has ("Read more": little; "Palantir's CEO": more)."""
    return min(3.0, sum(t.weight for t in question.focus))


def subject_share(question: Question, passage: str) -> float:
    """Weighted share of the corpus's subject terms (those the question doesn't name) in the passage."""
    total = sum(question.subject.values())
    if not total:
        return 0.0
    have = term_set(passage)
    return sum(w for t, w in question.subject.items() if t in have) / total


def passage_features(question: Question, hit: Hit) -> tuple[float, float, float]:
    """What every sentence of a passage shares: the passage's focus coverage, the most specific
    focus term it lacks, and its share of the corpus's subject."""
    focus, missing = coverage(question, hit.passage.text)
    return focus, missing, subject_share(question, hit.passage.text)


def sentence_features(
    question: Question,
    sentence: str,
    passage: tuple[float, float, float],
    cosine: float,
    best_cosine: float,
    hit: Hit,
) -> tuple[float, ...]:
    """The reader's features for one candidate sentence, in the order of FEATURES; `passage` is
    its passage's `passage_features`."""
    sentence_focus, sentence_missing = coverage(question, sentence)
    passage_focus, passage_missing, passage_subject = passage
    if question.wanted is Wanted.OTHER:
        supplied = missing_type = 0.0
    else:
        supplied = float(supplies(question, sentence))
        missing_type = 1.0 - supplied
    return (
        cosine,
        hit.dense,
        best_cosine - cosine,
        sentence_focus,
        passage_focus,
        sentence_missing,
        passage_missing,
        question.absent,
        supplied,
        missing_type,
        hit.lexical,
        passage_subject,
    )


def supplies(question: Question, sentence: str) -> bool:
    """The sentence holds the kind of answer the question asks for."""
    if question.wanted is Wanted.REASON:
        return gives_reason(sentence)
    return bool(candidates(sentence, question.wanted, question.text))


def answer_span(question: Question, sentence: str) -> Span | None:
    """The words of the sentence that answer a number, date or name question: the candidate
    nearest the question's focus words in the sentence (None for other questions or none found)."""
    if question.wanted not in (Wanted.NUMBER, Wanted.DATE, Wanted.NAME):
        return None
    found = candidates(sentence, question.wanted, question.text)
    if not found:
        return None
    stems = _stems(question)
    anchors = [(m.start(), m.end()) for m in WORD.finditer(sentence) if stem(m.group().lower()) in stems]
    if not anchors:
        return found[0]

    def gap(span: Span) -> tuple[int, bool]:
        # Characters between the span and the nearest question word (0 when adjacent), then
        # figures before number words: "More than 450 employees" over "one of the employees".
        nearest = min(max(a_start - span.end, span.start - a_end, 0) for a_start, a_end in anchors)
        return nearest, not any(ch.isdigit() for ch in span.text)

    return min(found, key=gap)


def _stems(question: Question) -> frozenset[str]:
    return frozenset(t.stem for t in question.focus)


def read(
    question: Question,
    hits: Sequence[Hit],
    sentence_cosines: Sequence[np.ndarray],
    model: ReaderModel,
) -> list[Reading]:
    """Every sentence of every hit, read: `sentence_cosines[i]` holds hit i's sentences' cosines."""
    best = max((float(c.max()) for c in sentence_cosines if len(c)), default=0.0)
    places, texts, rows = [], [], []
    for i, hit in enumerate(hits):
        passage = passage_features(question, hit)
        for j, sentence in enumerate(hit.passage.sentence_texts()):
            cosine = float(sentence_cosines[i][j])
            rows.append(sentence_features(question, sentence, passage, cosine, best, hit))
            places.append((i, j))
            texts.append(sentence)
    probabilities = model.sentence(np.asarray(rows, dtype=np.float64).reshape(-1, len(FEATURES)))
    return [
        Reading(hit=i, sentence=j, text=text, probability=float(p), features=row)
        for (i, j), text, p, row in zip(places, texts, probabilities, rows, strict=True)
    ]


def best_per_hit(readings: Sequence[Reading], hits: int) -> list[float]:
    """The probability of each hit's best sentence (0 for a passage without sentences)."""
    best = [0.0] * hits
    for reading in readings:
        best[reading.hit] = max(best[reading.hit], reading.probability)
    return best
