"""The engine: one `answer()` behind every front end.

It embeds the question, retrieves passages (hybrid), decides whether the articles answer it at
all, picks the sentence to quote from each passage, and folds passages that carry the same
sentence in several outlets into one citation.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import numpy as np

from bot import store
from bot.cite import Group, conflicting_sentence, disagree, shared_wording, stated_figures
from bot.config import Settings
from bot.embed import Embedder, load_embedder
from bot.errors import BadInputError
from bot.followup import resolve_followup
from bot.models import Answer, AnswerSpan, Citation, Hit, Source
from bot.neighbours import WordVectors, neighbour_coverage
from bot.quote import choose_quote
from bot.reader import Question as ReaderQuestion
from bot.reader import Reading, Vocabulary, answer_span, best_per_hit, read, read_question
from bot.reader_model import ReaderModel, default_model
from bot.search import FusionWeights, hybrid_search

log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 1000
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
NOT_COVERED = "The articles don't cover that."
# How many of the closest passages a declined question is shown, apart from any answer.
RELATED = 2


@dataclass(frozen=True)
class Abstention:
    """The first gate: is any retrieved sentence close enough to the question at all?

    A question passes when some sentence is very close in meaning, or fairly close and sharing at
    least some of the question's content words (thresholds chosen on tests/data/calibration-questions
    and offtopic-questions so that at most 1 in 50 answerable questions is declined). It turns away
    off-topic questions and page chrome; the reader (`bot.reader`) then judges whether the close
    sentences really answer what is asked.
    """

    sentence_alone: float = 0.76
    sentence_with_words: float = 0.28
    words: float = 0.1

    def declines(self, hits: list[Hit]) -> bool:
        # The closest sentence and the best word overlap may come from different passages: a
        # paraphrase is often found by meaning in one place while its rarer words sit in another.
        closest = max((hit.sentence for hit in hits), default=0.0)
        overlap = max((hit.coverage for hit in hits), default=0.0)
        return not (
            closest >= self.sentence_alone or (closest >= self.sentence_with_words and overlap >= self.words)
        )


class Engine:
    """A loaded index and model, answering questions. Safe to share between threads (read-only)."""

    def __init__(
        self,
        index: store.Index,
        embedder: Embedder,
        weights: FusionWeights | None = None,
        reader: ReaderModel | None = None,
    ) -> None:
        self.index = index
        self.embedder = embedder
        self.weights = weights or FusionWeights()
        self._reader = reader
        self.vocabulary = Vocabulary(index.lexical.document_shares())
        self.words = WordVectors(lambda words: embedder.encode(words))

    @property
    def reader(self) -> ReaderModel:
        """The fitted reader (bot/reader.json unless another was given)."""
        return self._reader or default_model()

    @reader.setter
    def reader(self, model: ReaderModel) -> None:
        self._reader = model

    def with_index(self, index: store.Index) -> Engine:
        """The same engine over another index (a reload): model, weights, reader and word cache kept."""
        engine = Engine(index, self.embedder, self.weights, self._reader)
        engine.words = self.words
        return engine

    def sources(self) -> list[Source]:
        """Every article in the index, as a citation source, in id order."""
        return [record.source() for _, record in sorted(self.index.manifest.articles.items())]

    def retrieve(self, question: str, k: int = 10) -> list[Hit]:
        """The `k` best passages as the reader ranks them, with no abstention and no grouping
        (for evaluation)."""
        question = validate_question(question)
        query_vector = self.embedder.encode([question])[0]
        return self._read(question, query_vector, max(k, 12)).hits[:k]

    def read(self, question: str, k: int = 12) -> Read:
        """The candidates of a question with the reader's verdict on each of their sentences."""
        question = validate_question(question)
        return self._read(question, self.embedder.encode([question])[0], k)

    def answer(self, question: str, k: int = 3, previous: Answer | None = None) -> Answer:
        """Up to `k` citations that answer the question, or an abstention.

        With `previous` (the last answer in a conversation), a question that refers back to it
        ("how many signed it?") is searched together with the question it follows; one that swaps
        the subject ("what about Microsoft?") is asked as the question before with the new subject.
        """
        question = validate_question(question)
        query = resolve_followup(question, previous.query if previous else None, self._similarity)
        query_vector = self.embedder.encode([query])[0]
        found = self._read(query, query_vector, max(k * 4, 12))
        if not found.hits or found.off_topic:
            return Answer(question=question, abstained=True, summary=NOT_COVERED, citations=(), query=query)
        if found.confidence < self.reader.answer_threshold:
            groups = self._groups(found, RELATED)[:RELATED]  # without a disagreeing figure's extra
            related = tuple(self._citation(n, group) for n, group in enumerate(groups, start=1))
            return Answer(question, True, NOT_COVERED, citations=(), query=query, related=related)
        groups = self._groups(found, k)
        citations = [self._citation(n, group) for n, group in enumerate(groups, start=1)]
        notes = tuple(_disagreements(groups))
        span = self._answer_span(found, groups[0])
        return Answer(
            question=question,
            abstained=False,
            summary=" ".join([_summary(citations), *notes]),
            citations=tuple(citations),
            notes=notes,
            query=query,
            answer_span=span,
        )

    def _read(self, query: str, query_vector: np.ndarray, k: int) -> Read:
        """Hybrid candidates, each sentence read, the passages re-ranked by their best sentence."""
        hits = hybrid_search(self.index, query_vector, query, k, self.weights)
        question = read_question(query, self.vocabulary)
        cosines = [self._sentence_cosines(hit, query_vector) for hit in hits]
        readings = read(question, hits, cosines, self.reader)
        near = neighbour_coverage(question, readings, [h.passage.text for h in hits[:3]], self.words)
        best = best_per_hit(readings, len(hits))
        order = sorted(range(len(hits)), key=lambda i: -(hits[i].score + self.reader.rank_weight * best[i]))
        by_hit: list[list[Reading]] = [[] for _ in hits]
        for reading in readings:
            by_hit[reading.hit].append(reading)
        return Read(
            question=question,
            hits=[hits[i] for i in order],
            readings=[by_hit[i] for i in order],
            confidence=self.reader.confidence(question, readings, near),
            off_topic=ABSTENTION.declines(hits),
            near=near,
        )

    def _sentence_cosines(self, hit: Hit, query_vector: np.ndarray) -> np.ndarray:
        rows = list(self.index.sentence_rows[hit.row])
        if not rows:
            return np.zeros(0, dtype=np.float32)
        vectors = np.asarray(self.index.sentence_vectors[rows], dtype=np.float32)
        return vectors @ query_vector.astype(np.float32)

    def _similarity(self, a: str, texts: list[str]) -> list[float]:
        vectors = self.words([a, *texts])  # the reader's cache of single-word embeddings
        return [float(vectors[t] @ vectors[a]) for t in texts]

    def _groups(self, found: Read, k: int) -> list[Group]:
        """The best `k` statements among the hits, each with every article that prints it, plus any
        statement of another article that gives different figures for the first one."""
        groups: list[Group] = []
        seen: set[tuple[str, int, int]] = set()
        for hit, readings in zip(found.hits, found.readings, strict=True):
            quote = choose_quote(hit.passage, [r.probability for r in readings])
            span = (hit.passage.article_id, quote.start, quote.end)
            if span in seen:  # overlapping passages of one article quoting the same sentence
                continue
            seen.add(span)
            if self._corroborates(groups, hit):
                continue
            if len(groups) < k:
                groups.append(Group(quote, [hit]))
        if groups and not any(disagree(groups[0].quote.text, g.quote.text) for g in groups[1:]):
            conflict = conflicting_sentence(groups[0], found.hits)
            if conflict is not None:
                groups.append(Group(conflict[1], [conflict[0]]))
        return groups

    def _answer_span(self, found: Read, top: Group) -> AnswerSpan | None:
        """The words of the first quote that answer a number, date or name question, when the
        reader is confident enough that the quote answers it at all."""
        bar = self.reader.span_thresholds.get(found.question.wanted.value, 1.0)
        if top.quote.score < bar:
            return None
        span = answer_span(found.question, top.quote.text)
        return AnswerSpan(n=1, text=span.text) if span else None

    @staticmethod
    def _corroborates(groups: list[Group], hit: Hit) -> bool:
        """Add the hit's article to a group whose statement it prints too; True if it did (or had)."""
        for group in groups:
            shared = shared_wording(group.quote, hit)
            if shared is None:
                continue
            if hit.passage.article_id not in group.articles:
                group.quote = shared
                group.hits.append(hit)
            return True
        return False

    def _citation(self, n: int, group: Group) -> Citation:
        first = group.hits[0]
        return Citation(
            n=n,
            passage_text=first.passage.text,
            quote=group.quote.text,
            score=round(first.score, 4),
            sources=tuple(self.index.manifest.articles[h.passage.article_id].source() for h in group.hits),
            passage_id=first.passage.id,
        )


@dataclass(frozen=True)
class Read:
    """A question's candidate passages in the reader's order, with its verdict on every sentence."""

    question: ReaderQuestion
    hits: list[Hit]
    readings: list[list[Reading]]  # per hit, one per sentence of its passage
    confidence: float  # the reader's probability that the candidates answer the question
    near: tuple[float, float, float]  # `neighbour_coverage` of the closest sentences
    off_topic: bool  # the first gate (`Abstention`) turns the question away


ABSTENTION = Abstention()


def _disagreements(groups: list[Group]) -> list[str]:
    """A note for each pair of citations that give different figures for the same fact."""
    notes = []
    for i, a in enumerate(groups, start=1):
        for j, b in enumerate(groups[i:], start=i + 1):
            if not (a.articles & b.articles) and disagree(a.quote.text, b.quote.text):
                fa, fb = ", ".join(stated_figures(a.quote.text)), ", ".join(stated_figures(b.quote.text))
                notes.append(f"The sources give different figures: {fa} in [{i}], {fb} in [{j}].")
    return notes


def validate_question(question: str) -> str:
    """The question with white space trimmed, or a clear error for empty and oversized input."""
    if not isinstance(question, str):
        raise BadInputError("the question must be text")
    cleaned = question.replace("\x00", "").strip()
    if _LONE_SURROGATE.search(cleaned):
        # What Python makes of bytes that are not UTF-8 (command line, stdin): they cannot be embedded.
        raise BadInputError("the question is not valid UTF-8 text")
    if not cleaned:
        raise BadInputError("the question is empty: ask something about the articles")
    if len(cleaned) > MAX_QUESTION_CHARS:
        raise BadInputError(
            f"the question is too long ({len(cleaned)} characters; the limit is {MAX_QUESTION_CHARS})"
        )
    return cleaned


def _summary(citations: list[Citation]) -> str:
    top = citations[0]
    outlets = len(top.sources)
    reported = f" (reported by {outlets} sources)" if outlets > 1 else ""
    return f"“{top.quote}” [1]{reported}"


def load_engine(settings: Settings, embedder: Embedder | None = None) -> Engine:
    """The engine over the live index, as it is (`bot.startup.ensure_index` brings it up to date)."""
    embedder = embedder or load_embedder(settings.model, settings.batch_size)
    return Engine(store.load(settings.index, embedder.name), embedder)
