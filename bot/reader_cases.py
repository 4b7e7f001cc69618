"""The questions the reader is fitted on, read once (`python -m bot.fit_reader`): each question's
candidate sentences with their features and labels, from our own sets and SQuAD's first half.

Labels are per sentence: a candidate sentence answers when it holds one of the question's
evidence strings (our sets) or lies in the gold paragraph and holds a gold answer (SQuAD).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bot.answer_type import Wanted
from bot.evaluate import normalize, read_questions, sample
from bot.reader import FocusTerm
from bot.reader import Question as ReaderQuestion
from bot.reader_model import ReaderModel
from bot.squad import FileSpans, squad_articles, write_reduced_kit

log = logging.getLogger("bot.fit_reader")

OUR_SETS = ("calibration-questions.jsonl", "offtopic-questions.jsonl", "casual-fit.jsonl")


@dataclass
class Case:
    """One question's candidates: features and labels per sentence, and per passage."""

    source: str  # "ours" or "squad"
    answerable: bool
    rows: list[tuple[float, ...]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    hit_of_row: list[int] = field(default_factory=list)
    hit_scores: list[float] = field(default_factory=list)
    hit_relevant: list[bool] = field(default_factory=list)
    sentences: list[str] = field(default_factory=list)
    question: ReaderQuestion | None = None
    answers: tuple[str, ...] = ()
    kind: str = ""
    text: str = ""
    near: tuple[float, float, float] = (0.0, 1.0, 0.0)
    off_topic: bool = False


def collect(engine, question: str, source: str, answerable: bool, label, relevant) -> Case:  # type: ignore[no-untyped-def]
    """Read one question and label its candidates with `label(hit, j, text)` and `relevant(hit)`."""
    found = engine.read(question, 12)
    case = Case(
        source=source,
        answerable=answerable,
        question=found.question,
        text=question,
        near=found.near,
        off_topic=found.off_topic,
    )
    for i, (hit, readings) in enumerate(zip(found.hits, found.readings, strict=True)):
        case.hit_scores.append(hit.score)
        case.hit_relevant.append(answerable and relevant(hit))
        for reading in readings:
            case.rows.append(reading.features)
            case.labels.append(int(answerable and label(hit, reading.sentence, reading.text)))
            case.hit_of_row.append(i)
            case.sentences.append(reading.text)
    return case


def our_cases(engine, data: Path, names: tuple[str, ...] = OUR_SETS) -> list[Case]:  # type: ignore[no-untyped-def]
    cases = []
    for name in names:
        path = data / name
        if not path.exists():
            log.warning("%s is missing: fitting without it", path)
            continue
        for q in read_questions(path):
            wanted = [normalize(e) for e in q.evidence]

            def holds(text: str, wanted: list[str] = wanted) -> bool:
                have = normalize(text)
                return any(w in have or (len(have) > 20 and have in w) for w in wanted)

            case = collect(
                engine,
                q.question,
                "ours",
                not q.unanswerable,
                lambda hit, j, text, holds=holds: holds(text),
                lambda hit, holds=holds: holds(hit.passage.text),
            )
            case.kind = q.kind or ("answerable" if not q.unanswerable else "unanswerable")
            cases.append(case)
    return cases


def squad_cases(settings, kit: Path, work: Path, size: int) -> list[Case]:  # type: ignore[no-untyped-def]
    """The first half of the kit, a tenth of its paragraphs removed, indexed in `work`."""
    from bot.startup import open_engine

    names = squad_articles(kit, "first")
    kit_cases = write_reduced_kit(kit, names, work / "corpus")
    engine = open_engine(settings.model_copy(update={"corpus": work / "corpus", "index": work / "index"}))
    engine.reader = ReaderModel.neutral()
    spans = FileSpans()
    paths = {r.id: r.path for r in engine.index.manifest.articles.values()}
    answerable = sample([c for c in kit_cases if c.answerable], size)
    unanswerable = [c for c in kit_cases if not c.answerable]
    cases = []
    for case in answerable + unanswerable:
        q = case.question

        def inside(hit, start: int, end: int, q=q) -> bool:  # type: ignore[no-untyped-def]
            path = paths[hit.passage.article_id]
            s, e = spans.span(path, start, end)
            return Path(path).name == q.article and s < q.end and e > q.start

        def label(hit, j: int, text: str, q=q, inside=inside) -> bool:  # type: ignore[no-untyped-def]
            sentence = hit.passage.sentences[j]
            return inside(hit, sentence.start, sentence.end) and any(
                a.lower() in text.lower() for a in q.answers
            )

        item = collect(
            engine,
            q.question,
            "squad",
            case.answerable,
            label,
            lambda hit, inside=inside: inside(hit, hit.passage.start, hit.passage.end),
        )
        item.answers = q.answers
        item.kind = "squad" if case.answerable else "squad-removed"
        cases.append(item)
    return cases


def case_to_json(case: Case) -> dict[str, object]:
    """A case as plain JSON (the --cache file), its reader question included."""
    data = dataclasses.asdict(case)
    data["question"]["wanted"] = case.question.wanted.value  # type: ignore[union-attr]
    return data


def case_from_json(data: dict) -> Case:  # type: ignore[type-arg]
    q = data["question"]
    question = ReaderQuestion(
        text=q["text"],
        wanted=Wanted(q["wanted"]),
        focus=tuple(FocusTerm(**t) for t in q["focus"]),
        absent=q["absent"],
        subject=q["subject"],
    )
    tuples = {
        "rows": [tuple(r) for r in data["rows"]],
        "answers": tuple(data["answers"]),
        "near": tuple(data["near"]),
    }
    return Case(**{**data, **tuples, "question": question})


def our_cases_from(args: argparse.Namespace, path: Path, progress: Callable[[str], None]) -> list[Case]:
    """One question set of ours, read with a neutral reader (features do not depend on the fit)."""
    from bot.config import load_settings
    from bot.startup import open_engine

    progress(f"reading {path} for the ablation…")
    engine = open_engine(load_settings())
    engine.reader = ReaderModel.neutral()
    return our_cases(engine, path.parent, (path.name,))


def collect_all(args: argparse.Namespace, progress: Callable[[str], None]) -> list[Case]:
    from bot.config import load_settings
    from bot.startup import open_engine

    settings = load_settings()
    progress("reading our question sets…")
    engine = open_engine(settings)
    engine.reader = ReaderModel.neutral()
    cases = our_cases(engine, args.data)
    progress(f"{len(cases)} of our questions; reading SQuAD's first half…")
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        cases += squad_cases(settings, args.squad, work, args.squad_sample)
    return cases
