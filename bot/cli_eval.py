"""`eval`: answer quality on a question file, or retrieval on a SQuAD kit (--squad), as a report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bot.cli_common import TopK, handles_errors, open_engine_here, out
from bot.errors import BadInputError

if TYPE_CHECKING:
    from bot.config import Settings


@handles_errors
def evaluate_command(
    ctx: typer.Context,
    questions: Annotated[
        Path | None,
        typer.Argument(
            metavar="[FILE.jsonl]", help="Question file in the ../shared/eval format (JSON lines)."
        ),
    ] = None,
    k: TopK = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    squad: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR", help="Evaluate retrieval on a SQuAD kit folder instead (../shared/external/squad)."
        ),
    ] = None,
    sample: Annotated[
        int | None,
        typer.Option(min=1, metavar="N", help="With --squad: a fixed random sample of N questions."),
    ] = None,
    squad_index: Annotated[
        Path, typer.Option(metavar="DIR", help="With --squad: where the kit's index is built and kept.")
    ] = Path(".squad-index"),
    unanswerable: Annotated[
        bool,
        typer.Option(
            "--unanswerable",
            help="With --squad: remove a tenth of the paragraphs from the indexed copy; questions that "
            "lose their answer must be declined, the others answered.",
        ),
    ] = False,
    half: Annotated[
        str,
        typer.Option(
            help="With --squad: the kit's articles by file name: first (fit), second (held out), all.",
            metavar="first|second|all",
        ),
    ] = "all",
) -> None:
    """Measure answer quality on a question file: hit@k, MRR@10, quotes, abstention (or --squad)."""
    if squad is not None and unanswerable:
        report = _evaluate_unanswerable(ctx.obj, squad, sample, squad_index, half)
    elif squad is not None:
        report = _evaluate_squad(ctx.obj, squad, sample, squad_index, half)
    elif questions is not None:
        report = _evaluate_questions(ctx.obj, questions, k)
    else:
        raise BadInputError("give a question file, or --squad DIR")
    data = report.to_dict()
    if as_json:
        out.print(json.dumps(data), markup=False)
    else:
        _print_report(data)


def _print_report(data: dict[str, Any]) -> None:
    """One figure a line, right-aligned names; misses and per-kind figures one a line each."""
    for key, value in data.items():
        if key == "misses":
            for miss in value:
                out.print(f"  miss: {miss}", markup=False)
        elif key == "by_kind":
            for kind, figures in value.items():
                shown = ", ".join(
                    f"{name} {f:.3f}" if isinstance(f, float) else f"{name} {f}"
                    for name, f in figures.items()
                )
                out.print(f"{'kind ' + kind:>22}: {shown}", markup=False)
        else:
            out.print(
                f"{key:>22}: {value:.4f}" if isinstance(value, float) else f"{key:>22}: {value}", markup=False
            )


def _evaluate_questions(settings: Settings, questions: Path, k: int):  # type: ignore[no-untyped-def]
    from bot.evaluate import evaluate, read_questions

    items = read_questions(questions)
    engine = open_engine_here(settings)
    return evaluate(
        items,
        ask=lambda q: engine.answer(q, k),
        retrieve=lambda q: [hit.passage.text for hit in engine.retrieve(q, 10)],
        source_text=lambda path: Path(path).read_text(encoding="utf-8"),
    )


def _evaluate_squad(settings: Settings, kit: Path, sample: int | None, index: Path, half: str):  # type: ignore[no-untyped-def]
    import shutil

    from bot.evaluate import sample as take_sample
    from bot.squad import evaluate_squad_engine, read_squad, squad_articles

    names = squad_articles(kit, half)
    corpus = kit / "articles"
    if half != "all":  # index a copy of that half's articles only
        corpus, index = index / f"half-{half}" / "corpus", index / f"half-{half}" / "index"
        corpus.mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copyfile(kit / "articles" / name, corpus / name)
    questions = take_sample([q for q in read_squad(kit) if q.article in names], sample)
    kit_settings = settings.model_copy(update={"corpus": corpus, "index": index})
    return evaluate_squad_engine(open_engine_here(kit_settings), questions)


def _evaluate_unanswerable(settings: Settings, kit: Path, size: int | None, index: Path, half: str):  # type: ignore[no-untyped-def]
    from bot.evaluate import sample
    from bot.squad import evaluate_unanswerable, squad_articles, write_reduced_kit

    names = squad_articles(kit, half)
    root = index / f"reduced-{half}"
    cases = write_reduced_kit(kit, names, root / "corpus")
    answerable = sample([c for c in cases if c.answerable], size)
    kept = answerable + [c for c in cases if not c.answerable]
    kit_settings = settings.model_copy(update={"corpus": root / "corpus", "index": root / "index"})
    return evaluate_unanswerable(open_engine_here(kit_settings), kept, half)
