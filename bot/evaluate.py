"""Measuring answer quality on question files: the hit rule of ../shared/eval and the SQuAD kit's.

Hit rule (shared/eval/README.md): a returned passage is a hit when, after normalizing both sides
(curly quotes to straight, runs of white space to one space, lower case), it contains one of the
question's evidence strings.
"""

from __future__ import annotations

import json
import random
import re
import statistics
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
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
    """Quality figures for one question set."""

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

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


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
    ranks, quote_hits, lengths, misses = [], [], [], []
    correct_abstentions = declined = wrongly_answered = 0
    quotes_total = quotes_verbatim = 0
    for q in questions:
        answer = ask(q.question)
        for citation in answer.citations:
            lengths.append(len(citation.passage))
            for source in citation.sources:
                quotes_total += 1
                quotes_verbatim += _squash(citation.quote) in _squash(source_text(source.path))
        if q.unanswerable:
            correct_abstentions += answer.abstained
            wrongly_answered += not answer.abstained
            continue
        correct_abstentions += not answer.abstained
        declined += answer.abstained
        rank = first_hit(retrieve(q.question)[:10], q.evidence)
        ranks.append(rank)
        quote_hits.append(first_hit([c.quote for c in answer.citations[:3]], q.evidence) is not None)
        if rank != 1:
            misses.append(f"{q.id} rank={rank}: {q.question}")
    n = len(ranks) or 1
    return Report(
        questions=len(questions),
        answerable=len(ranks),
        hit_at_1=sum(r == 1 for r in ranks) / n,
        hit_at_3=sum(r is not None and r <= 3 for r in ranks) / n,
        hit_at_5=sum(r is not None and r <= 5 for r in ranks) / n,
        mrr_at_10=sum(1 / r for r in ranks if r) / n,
        quote_hit_at_3=sum(quote_hits) / n,
        abstention_accuracy=correct_abstentions / len(questions),
        answerable_declined=declined,
        unanswerable_answered=wrongly_answered,
        quote_faithfulness=quotes_verbatim / quotes_total if quotes_total else 1.0,
        mean_passage_chars=statistics.fmean(lengths) if lengths else 0.0,
        misses=tuple(misses),
    )


_WHITE = re.compile(r"\s+")


def _squash(text: str) -> str:
    return _WHITE.sub("", text)


def sample(items: list, n: int | None, seed: int = 13) -> list:  # type: ignore[type-arg]
    """A deterministic sample of `n` items (all of them when n is None or larger)."""
    if n is None or n >= len(items):
        return items
    return random.Random(seed).sample(items, n)


@dataclass(frozen=True)
class SquadQuestion:
    id: str
    question: str
    answers: tuple[str, ...]
    article: str
    start: int
    end: int


def read_squad(kit: Path) -> list[SquadQuestion]:
    """The SQuAD kit's questions.jsonl (gold paragraph as character offsets into its article file)."""
    path = kit / "questions.jsonl"
    if not path.is_file():
        raise BadInputError(f"{kit}: not a SQuAD kit (no questions.jsonl)")
    items = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            r = json.loads(line)
            items.append(
                SquadQuestion(
                    r["id"],
                    r["question"],
                    tuple(r["answers"]),
                    r["article"],
                    r["para_char_start"],
                    r["para_char_end"],
                )
            )
    return items


class FileSpans:
    """Maps a passage (offsets in an article's cleaned text) back to character offsets in its file."""

    def __init__(self) -> None:
        self._maps: dict[str, tuple[int, list[tuple[int, int]]]] = {}

    def span(self, path: str, start: int, end: int) -> tuple[int, int]:
        body_offset, mapping = self._map(path)
        return body_offset + self._to_raw(mapping, start), body_offset + self._to_raw(mapping, end - 1) + 1

    def _map(self, path: str) -> tuple[int, list[tuple[int, int]]]:
        if path not in self._maps:
            from bot.clean import raw_offsets
            from bot.corpus import parse_article

            data = Path(path).read_bytes()
            article = parse_article(Path(path), data)
            text = data.decode("utf-8-sig")
            self._maps[path] = (len(text) - len(article.raw), raw_offsets(article.raw, article.title))
        return self._maps[path]

    @staticmethod
    def _to_raw(mapping: list[tuple[int, int]], offset: int) -> int:
        clean_start, raw_start = max((m for m in mapping if m[0] <= offset), default=(0, 0))
        return raw_start + offset - clean_start


@dataclass(frozen=True)
class SquadReport:
    questions: int
    passages: int
    mean_passage_chars: float
    r_at_1: float
    r_at_5: float
    r_at_10: float
    mrr_at_10: float
    answer_recall_at_5: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def evaluate_squad(
    questions: list[SquadQuestion],
    retrieve: Callable[[str], list[tuple[str, int, int, str]]],
    passages: int,
    mean_passage_chars: float,
) -> SquadReport:
    """Passage retrieval on the SQuAD kit: a hit when a returned passage overlaps the gold paragraph.

    `retrieve(question)` gives the top 10 as (article file name, file start, file end, passage text).
    """
    ranks, answer_hits = [], []
    for q in questions:
        results = retrieve(q.question)[:10]
        rank = next(
            (
                i
                for i, (name, s, e, _) in enumerate(results, 1)
                if name == q.article and s < q.end and e > q.start
            ),
            None,
        )
        ranks.append(rank)
        wanted = [a.lower() for a in q.answers]
        answer_hits.append(any(w in text.lower() for _, _, _, text in results[:5] for w in wanted))
    n = len(questions) or 1
    return SquadReport(
        questions=len(questions),
        passages=passages,
        mean_passage_chars=mean_passage_chars,
        r_at_1=sum(r == 1 for r in ranks) / n,
        r_at_5=sum(r is not None and r <= 5 for r in ranks) / n,
        r_at_10=sum(r is not None for r in ranks) / n,
        mrr_at_10=sum(1 / r for r in ranks if r) / n,
        answer_recall_at_5=sum(answer_hits) / n,
    )


def evaluate_squad_engine(engine, questions: list[SquadQuestion]) -> SquadReport:  # type: ignore[no-untyped-def]
    """Score an engine whose index holds the kit's articles on the kit's questions."""
    spans = FileSpans()
    paths = {record.id: record.path for record in engine.index.manifest.articles.values()}

    def retrieve(question: str) -> list[tuple[str, int, int, str]]:
        results = []
        for hit in engine.retrieve(question, 10):
            path = paths[hit.passage.article_id]
            start, end = spans.span(path, hit.passage.start, hit.passage.end)
            results.append((Path(path).name, start, end, hit.passage.text))
        return results

    lengths = [len(p.text) for p in engine.index.passages]
    return evaluate_squad(questions, retrieve, len(lengths), statistics.fmean(lengths) if lengths else 0.0)
