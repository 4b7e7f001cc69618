"""Measuring on the SQuAD kit (../shared/external/squad): its questions and articles, the halves
to fit on and to hold out, retrieval figures, and a copy with paragraphs removed so that some
questions lose their answer and must be declined."""

from __future__ import annotations

import json
import random
import re
import statistics
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from bot.errors import BadInputError


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
        rank, answer_hit = _squad_hits(q, retrieve(q.question)[:10])
        ranks.append(rank)
        answer_hits.append(answer_hit)
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


def _squad_hits(q: SquadQuestion, results: list[tuple[str, int, int, str]]) -> tuple[int | None, bool]:
    """The rank of the first result overlapping the gold paragraph, and whether a gold answer is
    written in the top 5 (results: article file name, file start, file end, passage text)."""
    rank = next(
        (
            i
            for i, (name, s, e, _) in enumerate(results, 1)
            if name == q.article and s < q.end and e > q.start
        ),
        None,
    )
    wanted = [a.lower() for a in q.answers]
    return rank, any(w in text.lower() for *_, text in results[:5] for w in wanted)


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


# --- SQuAD with answers removed: does the engine decline what the corpus no longer says? ---

SQUAD_HALVES = ("first", "second", "all")


def squad_articles(kit: Path, half: str) -> list[str]:
    """The kit's article files of one half, by file name: the first 24 are for fitting and
    calibrating, the last 24 are held out for measurement."""
    if half not in SQUAD_HALVES:
        raise BadInputError(f"--half must be one of {', '.join(SQUAD_HALVES)}")
    names = sorted(p.name for p in (kit / "articles").glob("*.txt"))
    middle = len(names) // 2
    return {"first": names[:middle], "second": names[middle:], "all": names}[half]


@dataclass(frozen=True)
class SquadCase:
    """A kit question against a copy of the kit with some paragraphs removed."""

    question: SquadQuestion  # offsets point into the reduced copy (unanswerable: the old ones)
    answerable: bool


def write_reduced_kit(
    kit: Path, names: list[str], target: Path, drop_share: float = 0.1, seed: int = 13
) -> list[SquadCase]:
    """Copy the named articles into `target`, leaving out a fixed random share of their paragraphs.

    A question whose paragraph is left out and whose answers occur nowhere in the copy becomes
    unanswerable; one whose paragraph is left out but whose answer is still written elsewhere is
    dropped (the corpus may still answer it); every other question stays answerable, its gold
    paragraph offsets moved to where the paragraph now stands.
    """
    target.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    by_article: dict[str, list[SquadQuestion]] = {}
    for q in read_squad(kit):
        by_article.setdefault(q.article, []).append(q)
    moved: dict[tuple[str, int], tuple[int, int]] = {}
    texts = []
    for name in names:
        text = (kit / "articles" / name).read_text(encoding="utf-8")
        head, _, body = text.partition("\n\n")
        paragraphs = body.split("\n\n")
        dropped = set(rng.sample(range(len(paragraphs)), max(1, round(drop_share * len(paragraphs)))))
        kept, offset = [], len(head) + 2
        old = len(head) + 2
        for i, paragraph in enumerate(paragraphs):
            if i not in dropped:
                moved[(name, old)] = (offset, offset + len(paragraph))
                kept.append(paragraph)
                offset += len(paragraph) + 2
            old += len(paragraph) + 2
        reduced = head + "\n\n" + "\n\n".join(kept)
        (target / name).write_text(reduced, encoding="utf-8", newline="")
        texts.append(reduced.lower())
    everything = "\n".join(texts)
    cases = []
    for name in names:
        for q in by_article.get(name, []):
            if (name, q.start) in moved:
                start, end = moved[(name, q.start)]
                cases.append(SquadCase(SquadQuestion(q.id, q.question, q.answers, name, start, end), True))
            elif not any(a.lower() in everything for a in q.answers):
                cases.append(SquadCase(q, False))
    return cases


def token_f1(prediction: str, answers: Iterable[str]) -> float:
    """SQuAD's token F1 (lower case, no punctuation or articles), best over the gold answers."""

    def tokens(text: str) -> list[str]:
        text = re.sub(r"\b(a|an|the)\b", " ", re.sub(r"[^\w\s]", " ", text.lower()))
        return text.split()

    predicted = tokens(prediction)
    best = 0.0
    for answer in answers:
        gold = tokens(answer)
        common = sum(min(predicted.count(t), gold.count(t)) for t in set(predicted))
        if common:
            precision, recall = common / len(predicted), common / len(gold)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


@dataclass(frozen=True)
class UnanswerableReport:
    """SQuAD with paragraphs removed: retrieval and abstention, and the answer spans shown."""

    half: str
    answerable: int
    unanswerable: int
    r_at_1: float
    r_at_5: float
    answer_recall_at_5: float
    answerable_declined: float
    unanswerable_declined: float
    span_shown: float
    span_f1: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def evaluate_unanswerable(engine, cases: list[SquadCase], half: str) -> UnanswerableReport:  # type: ignore[no-untyped-def]
    """Score an engine whose index holds a reduced kit copy (`write_reduced_kit`) on its cases."""
    spans = FileSpans()
    paths = {record.id: record.path for record in engine.index.manifest.articles.values()}
    answerable = [c.question for c in cases if c.answerable]
    ranks, answer_hits, declined, shown, f1s = [], [], 0, 0, []
    for q in answerable:
        found = [
            (Path(paths[h.passage.article_id]).name, *_file_span(spans, paths, h), h.passage.text)
            for h in engine.retrieve(q.question, 10)
        ]
        rank, answer_hit = _squad_hits(q, found)
        ranks.append(rank)
        answer_hits.append(answer_hit)
        answer = engine.answer(q.question, 3)
        declined += answer.abstained
        if answer.answer_span is not None:
            shown += 1
            f1s.append(token_f1(answer.answer_span.text, q.answers))
    unanswerable = [c.question for c in cases if not c.answerable]
    declined_unanswerable = sum(engine.answer(q.question, 3).abstained for q in unanswerable)
    n = len(answerable) or 1
    return UnanswerableReport(
        half=half,
        answerable=len(answerable),
        unanswerable=len(unanswerable),
        r_at_1=sum(r == 1 for r in ranks) / n,
        r_at_5=sum(r is not None and r <= 5 for r in ranks) / n,
        answer_recall_at_5=sum(answer_hits) / n,
        answerable_declined=declined / n,
        unanswerable_declined=declined_unanswerable / (len(unanswerable) or 1),
        span_shown=shown / n,
        span_f1=statistics.fmean(f1s) if f1s else 0.0,
    )


def _file_span(spans: FileSpans, paths: dict[str, str], hit) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    return spans.span(paths[hit.passage.article_id], hit.passage.start, hit.passage.end)
