"""Measuring answer quality on question files: the hit rule of ../shared/eval and the SQuAD kit's.

Hit rule (shared/eval/README.md): a returned passage is a hit when, after normalizing both sides
(curly quotes to straight, runs of white space to one space, lower case), it contains one of the
question's evidence strings.

A false premise ("why did Amazon cancel the Palantir contract") is handled right when it is
declined or when the first quote is a sentence that contradicts it (the question's `contradiction`
strings, matched by the same rule): the reader issue counts either.
"""

from __future__ import annotations

import json
import random
import re
import statistics
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bot.errors import BadInputError
from bot.models import Answer

_QUOTES = str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"', "′": "'", "″": '"'})
_SPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """The hit rule's normalization: straight quotes, single spaces, lower case."""
    return _SPACE.sub(" ", text.translate(_QUOTES)).strip().lower()


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    evidence: tuple[str, ...]
    unanswerable: bool
    kind: str = ""  # e.g. casual, paraphrase, near-topic, false-premise, chrome (for per-kind figures)
    contradiction: tuple[str, ...] = ()  # sentences of the articles that refute a false premise


def read_questions(path: Path) -> list[Question]:
    """Questions in the shared/eval format, one JSON object a line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise BadInputError(f"{path}: is not UTF-8 text") from None
    questions = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            questions.append(
                Question(
                    id=str(record.get("id", number)),
                    question=record["question"],
                    evidence=tuple(record.get("evidence") or ()),
                    unanswerable=bool(record.get("unanswerable", False)),
                    kind=str(record.get("kind") or ""),
                    contradiction=tuple(record.get("contradiction") or ()),
                )
            )
        except (json.JSONDecodeError, KeyError, TypeError):
            raise BadInputError(f"{path}:{number}: not a question object with a 'question' field") from None
    if not questions:
        raise BadInputError(f"{path}: holds no questions")
    return questions


def first_hit(texts: Iterable[str], evidence: Iterable[str]) -> int | None:
    """1-based rank of the first text that contains an evidence string, or None."""
    wanted = [normalize(e) for e in evidence]
    for rank, text in enumerate(texts, start=1):
        have = normalize(text)
        if any(w in have for w in wanted):
            return rank
    return None


@dataclass(frozen=True)
class Report:
    """Quality figures for one question set (and, in `by_kind`, for each kind of question in it)."""

    questions: int
    answerable: int
    hit_at_1: float
    hit_at_3: float
    hit_at_5: float
    mrr_at_10: float
    quote_hit_at_3: float
    abstention_accuracy: float
    answerable_declined: int
    unanswerable_answered: int
    quote_faithfulness: float
    mean_passage_chars: float
    misses: tuple[str, ...]
    by_kind: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Outcome:
    """What happened to one question."""

    question: Question
    abstained: bool
    rank: int | None  # first passage holding the evidence (answerable questions)
    quote_hit: bool
    quotes: int
    verbatim: int
    lengths: tuple[int, ...]
    contradicted: bool = False  # answered with a contradiction of the question's premise first


def evaluate(
    questions: list[Question],
    ask: Callable[[str], Answer],
    retrieve: Callable[[str], list[str]],
    source_text: Callable[[str], str],
) -> Report:
    """Score an engine on questions.

    `ask` is the engine's full answer (with abstention), used for abstention and quotes; `retrieve`
    gives the ranked passage texts without abstention (at least 10), so retrieval is measured even
    where the engine would decline. `source_text(path)` reads a cited article file, for checking
    that every quote is verbatim in it (white space aside).
    """
    outcomes = []
    for q in questions:
        answer = ask(q.question)
        quotes = verbatim = 0
        for citation in answer.citations:
            for source in citation.sources:
                quotes += 1
                verbatim += _squash(citation.quote) in _squash(source_text(source.path))
        rank = None if q.unanswerable else first_hit(retrieve(q.question)[:10], q.evidence)
        quote_hit = first_hit([c.quote for c in answer.citations[:3]], q.evidence) is not None
        lengths = tuple(len(c.passage_text) for c in answer.citations)
        first_quote = [c.quote for c in answer.citations[:1]]
        refutes = bool(q.contradiction) and first_hit(first_quote, q.contradiction) is not None
        outcomes.append(Outcome(q, answer.abstained, rank, quote_hit, quotes, verbatim, lengths, refutes))
    report = _aggregate(outcomes)
    kinds = sorted({o.question.kind for o in outcomes if o.question.kind})
    by_kind = {kind: _kind_figures([o for o in outcomes if o.question.kind == kind]) for kind in kinds}
    return Report(**{**asdict(report), "by_kind": by_kind})


def _aggregate(outcomes: list[Outcome]) -> Report:
    answerable = [o for o in outcomes if not o.question.unanswerable]
    ranks = [o.rank for o in answerable]
    quotes = sum(o.quotes for o in outcomes)
    lengths = [length for o in outcomes for length in o.lengths]
    n = len(ranks) or 1
    return Report(
        questions=len(outcomes),
        answerable=len(answerable),
        hit_at_1=sum(r == 1 for r in ranks) / n,
        hit_at_3=sum(r is not None and r <= 3 for r in ranks) / n,
        hit_at_5=sum(r is not None and r <= 5 for r in ranks) / n,
        mrr_at_10=sum(1 / r for r in ranks if r) / n,
        quote_hit_at_3=sum(o.quote_hit for o in answerable) / n,
        abstention_accuracy=sum(o.abstained == o.question.unanswerable for o in outcomes)
        / (len(outcomes) or 1),
        answerable_declined=sum(o.abstained for o in answerable),
        unanswerable_answered=sum(not o.abstained for o in outcomes if o.question.unanswerable),
        quote_faithfulness=sum(o.verbatim for o in outcomes) / quotes if quotes else 1.0,
        mean_passage_chars=statistics.fmean(lengths) if lengths else 0.0,
        misses=tuple(
            f"{o.question.id} rank={o.rank}: {o.question.question}" for o in answerable if o.rank != 1
        ),
    )


def _kind_figures(outcomes: list[Outcome]) -> dict[str, float]:
    """Per kind: retrieval and quotes for answerable kinds, the share declined for every kind, and
    for false premises the share declined or answered with their contradiction first."""
    report = _aggregate(outcomes)
    figures: dict[str, float] = {"questions": len(outcomes)}
    if report.answerable:
        figures |= {
            "hit_at_1": report.hit_at_1,
            "hit_at_3": report.hit_at_3,
            "mrr_at_10": report.mrr_at_10,
            "quote_hit_at_3": report.quote_hit_at_3,
        }
    figures["declined"] = sum(o.abstained for o in outcomes) / (len(outcomes) or 1)
    if any(o.question.contradiction for o in outcomes):
        # Over every question of the kind: one the articles don't contradict counts only declined.
        handled = sum(o.abstained or o.contradicted for o in outcomes)
        figures["declined_or_contradicted"] = handled / len(outcomes)
    return figures


_WHITE = re.compile(r"\s+")


def _squash(text: str) -> str:
    return _WHITE.sub("", text)


def sample(items: list, n: int | None, seed: int = 13) -> list:  # type: ignore[type-arg]
    """A deterministic sample of `n` items (all of them when n is None or larger)."""
    if n is None or n >= len(items):
        return items
    return random.Random(seed).sample(items, n)
