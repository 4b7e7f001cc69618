"""SQuAD with answers removed, on a tiny kit made here: the reduced copy, its cases, token F1, the
halves, and the whole measurement through a real engine with the fake embedder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.config import Settings
from bot.errors import BadInputError
from bot.squad import evaluate_unanswerable, squad_articles, token_f1, write_reduced_kit
from tests.fakes import FAKE_MODEL

PARAGRAPHS = {
    "alpha.txt": [
        "The Alpha bridge opened in 1931 after four years of work by the river authority.",
        "Its main span is 420 metres long and carries six lanes of traffic every day.",
        "A toll of two dollars was charged until the bonds were repaid in 1962.",
    ],
    "beta.txt": [
        "Beta Lake lies at 1,200 metres above sea level in the northern hills.",
        "The lake freezes over most winters, and skaters come from Gamma Town.",
    ],
}


def _kit(root: Path) -> Path:
    (root / "articles").mkdir(parents=True)
    lines = []
    for name, paragraphs in PARAGRAPHS.items():
        head = f"# {name[:-4].title()}"
        text = head + "\n\n" + "\n\n".join(paragraphs)
        (root / "articles" / name).write_text(text, encoding="utf-8")
        offset = len(head) + 2
        for i, paragraph in enumerate(paragraphs):
            answer = paragraph.split()[-2]  # a word of the paragraph, as a gold answer
            lines.append(
                {
                    "id": f"{name}-{i}",
                    "question": f"What about {paragraph.split()[1]} {paragraph.split()[2]}?",
                    "answers": [answer],
                    "article": name,
                    "paragraph_index": i,
                    "para_char_start": offset,
                    "para_char_end": offset + len(paragraph),
                }
            )
            offset += len(paragraph) + 2
    (root / "questions.jsonl").write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")
    return root


def test_the_halves_are_by_file_name_and_a_bad_half_is_refused(tmp_path: Path) -> None:
    kit = _kit(tmp_path / "kit")
    assert squad_articles(kit, "first") == ["alpha.txt"]
    assert squad_articles(kit, "second") == ["beta.txt"]
    assert squad_articles(kit, "all") == ["alpha.txt", "beta.txt"]
    with pytest.raises(BadInputError, match="--half"):
        squad_articles(kit, "middle")


def test_the_reduced_copy_moves_kept_paragraphs_and_marks_lost_answers(tmp_path: Path) -> None:
    kit = _kit(tmp_path / "kit")
    target = tmp_path / "reduced"
    cases = write_reduced_kit(kit, ["alpha.txt", "beta.txt"], target, drop_share=0.34, seed=1)
    kept = [c for c in cases if c.answerable]
    lost = [c for c in cases if not c.answerable]
    assert kept and lost
    for case in kept:
        text = (target / case.question.article).read_text(encoding="utf-8")
        assert text[case.question.start : case.question.end] in PARAGRAPHS[case.question.article]
    everything = " ".join(p.read_text(encoding="utf-8").lower() for p in target.glob("*.txt"))
    for case in lost:
        assert not any(answer.lower() in everything for answer in case.question.answers)
    before = sum(len(p.read_text(encoding="utf-8")) for p in (kit / "articles").glob("*.txt"))
    after = sum(len(p.read_text(encoding="utf-8")) for p in target.glob("*.txt"))
    assert after < before


def test_token_f1_is_squads() -> None:
    assert token_f1("More than 450", ["450"]) == pytest.approx(0.5)
    assert token_f1("the Denver Broncos", ["Denver Broncos"]) == 1.0
    assert token_f1("Carolina", ["Denver Broncos", "Broncos"]) == 0.0


def test_the_measurement_runs_through_a_real_engine(tmp_path: Path, fake_embedder) -> None:  # type: ignore[no-untyped-def]
    from bot.startup import open_engine

    kit = _kit(tmp_path / "kit")
    cases = write_reduced_kit(
        kit, ["alpha.txt", "beta.txt"], tmp_path / "copy" / "corpus", drop_share=0.34, seed=1
    )
    settings = Settings(
        corpus=tmp_path / "copy" / "corpus", index=tmp_path / "copy" / "index", model=FAKE_MODEL
    )
    engine = open_engine(settings)
    report = evaluate_unanswerable(engine, cases, "all")
    assert report.answerable == sum(c.answerable for c in cases)
    assert report.unanswerable == sum(not c.answerable for c in cases)
    assert report.r_at_1 > 0  # the bag-of-words fake still finds some paragraphs by their words
    # The shares are the engine's own decisions, counted over the right questions.
    lost = [c.question.question for c in cases if not c.answerable]
    kept = [c.question.question for c in cases if c.answerable]
    assert report.unanswerable_declined == sum(engine.answer(q, 3).abstained for q in lost) / len(lost)
    assert report.answerable_declined == sum(engine.answer(q, 3).abstained for q in kept) / len(kept)


def test_eval_squad_measures_only_the_half_asked_for(tmp_path: Path, fake_embedder) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from bot.cli import app

    kit = _kit(tmp_path / "kit")
    result = CliRunner().invoke(
        app,
        ["--model", FAKE_MODEL, "eval", "--squad", str(kit), "--half", "first", "--json",
         "--squad-index", str(tmp_path / "kit-index")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["questions"] == len(PARAGRAPHS["alpha.txt"])  # the first half: alpha.txt only
    assert sorted(p.name for p in (tmp_path / "kit-index" / "half-first" / "corpus").iterdir()) == [
        "alpha.txt"
    ]
