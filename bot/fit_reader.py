"""Fit the reader (bot/reader.json): one logistic regression over the reader's features, and the
thresholds chosen with it. Maintainers run it after changing a feature; CI never does.

    python -m bot.fit_reader [--squad ../shared/external/squad] [--squad-sample 1500]

Fitted only on our own question sets (tests/data: written without opening ../shared/eval) and
the FIRST 24 articles of the SQuAD kit by file name, a tenth of their paragraphs removed so that
some questions lose their answer. The last 24 articles are held out: nothing here reads them.
The questions are read once into cases (`bot.reader_cases`); `--cache` keeps them for a refit.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bot.neighbours import NEAR_FEATURES
from bot.reader import FEATURES, answer_span, focus_weight
from bot.reader_cases import Case, case_from_json, case_to_json, collect_all, our_cases_from
from bot.reader_model import DECISION_FEATURES, WEIGHTS_FILE, Logistic, ReaderModel, decision_features
from bot.squad import token_f1

log = logging.getLogger("bot.fit_reader")

ROOT = Path(__file__).resolve().parent.parent
# The bar is 97 % of answerable questions answered; the first gate already declines up to
# 2 %, so the reader may decline at most 1 % of each source's answerable questions on its own.
KEEP_ANSWERED = 0.99
SPAN_F1 = 0.72  # show answer spans only above the confidence where they are this good on the fit data
RANK_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)


def fit_logistic(rows: list, labels: list, weights: list, features: tuple[str, ...]) -> dict:  # type: ignore[type-arg]
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(rows, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    model = LogisticRegression(C=1.0, max_iter=5000)
    model.fit((x - mean) / scale, np.asarray(labels), sample_weight=w / w.mean())
    return {
        "features": list(features),
        "mean": mean.round(6).tolist(),
        "scale": scale.round(6).tolist(),
        "coef": model.coef_[0].round(6).tolist(),
        "intercept": round(float(model.intercept_[0]), 6),
    }


def fit_sentence(cases: list[Case]) -> dict:  # type: ignore[type-arg]
    """Does a sentence answer? Each answerable question weighs the same, each source half."""
    rows, labels, weights = [], [], []
    usable = [c for c in cases if c.rows and c.answerable]
    per_source = {s: sum(1 for c in usable if c.source == s) for s in {c.source for c in usable}}
    for case in usable:
        rows += case.rows
        labels += case.labels
        weights += [1.0 / len(case.rows) / per_source[case.source]] * len(case.rows)
    return fit_logistic(rows, labels, weights, FEATURES)


def fit_decision(cases: list[Case], sentence: Logistic, drop: tuple[str, ...] = ()) -> dict:  # type: ignore[type-arg]
    """Does the question get an answer? Answerable and unanswerable weigh the same in each source."""
    rows, labels, weights = [], [], []
    groups = {(c.source, c.answerable) for c in cases}
    size = {g: sum(1 for c in cases if (c.source, c.answerable) == g) for g in groups}
    for case in cases:
        if case.off_topic:  # declined before the reader is asked: nothing to learn from it here
            continue
        rows.append(question_row(case, sentence, drop))
        labels.append(int(case.answerable))
        weights.append(1.0 / size[(case.source, case.answerable)])
    return fit_logistic(rows, labels, weights, DECISION_FEATURES)


def question_row(case: Case, sentence: Logistic, drop: tuple[str, ...] = ()) -> tuple[float, ...]:
    rows = np.asarray(case.rows, dtype=np.float64).reshape(-1, len(FEATURES))
    features = decision_features(rows, sentence(rows), case.near, focus_weight(case.question))
    return tuple(0.0 if name in drop else v for name, v in zip(DECISION_FEATURES, features, strict=True))


def probabilities(model: Logistic, case: Case) -> np.ndarray:
    return model(np.asarray(case.rows, dtype=np.float64).reshape(-1, len(FEATURES)))


def best_per_hit(case: Case, probs: np.ndarray) -> np.ndarray:
    best = np.zeros(len(case.hit_scores))
    for row, hit in enumerate(case.hit_of_row):
        best[hit] = max(best[hit], probs[row])
    return best


def reader_order(case: Case, sentence: Logistic, rank_weight: float) -> np.ndarray:
    """The case's hits in the engine's order: fused score + rank_weight × best sentence probability."""
    best = best_per_hit(case, probabilities(sentence, case))
    return np.argsort(-(np.asarray(case.hit_scores) + rank_weight * best), kind="stable")


def reciprocal_rank(case: Case, sentence: Logistic, rank_weight: float) -> float:
    """1 / the rank of the first relevant passage in the top 10 (0 when none is)."""
    order = reader_order(case, sentence, rank_weight)[:10]
    rank = next((r for r, i in enumerate(order, 1) if case.hit_relevant[i]), None)
    return 1 / rank if rank else 0.0


def choose_rank_weight(params: Logistic, cases: list[Case]) -> tuple[float, dict[float, float]]:
    """The weight of the reader's best sentence in the passage order with the best MRR@10, each
    source's MRR counting the same (SQuAD's questions are many, and unlike people's)."""
    scored = {}
    for weight in RANK_WEIGHTS:
        by_source: dict[str, list[float]] = {}
        for case in (c for c in cases if c.answerable and c.rows):
            by_source.setdefault(case.source, []).append(reciprocal_rank(case, params, weight))
        scored[weight] = float(np.mean([np.mean(v) for v in by_source.values()]))
    return max(scored, key=lambda w: (scored[w], -w)), scored


def confidences(cases: list[Case], model: ReaderModel, drop: tuple[str, ...] = ()) -> list[float]:
    return [float(model.decision(np.asarray([question_row(c, model.sentence, drop)]))[0]) for c in cases]


def choose_answer_threshold(cases: list[Case], model: ReaderModel, drop: tuple[str, ...] = ()) -> float:
    """The highest bar that still answers KEEP_ANSWERED of each source's answerable questions."""
    bars = []
    for source in {c.source for c in cases}:
        answerable = [c for c in cases if c.source == source and c.answerable and not c.off_topic]
        bars.append(float(np.quantile(confidences(answerable, model, drop), 1 - KEEP_ANSWERED)))
    return min(bars)


def declined_by_kind(
    cases: list[Case], model: ReaderModel, drop: tuple[str, ...] = ()
) -> dict[str, tuple[int, float]]:
    """For each kind: how many questions, and the share the engine declines (first gate or reader)."""
    declined = [
        c.off_topic or p < model.answer_threshold
        for c, p in zip(cases, confidences(cases, model, drop), strict=True)
    ]
    figures = {}
    for kind in sorted({c.kind for c in cases}):
        picked = [d for d, c in zip(declined, cases, strict=True) if c.kind == kind]
        figures[kind] = (len(picked), sum(picked) / len(picked))
    return figures


def choose_span_thresholds(
    params: Logistic, cases: list[Case], rank_weight: float
) -> tuple[dict[str, float], float, float]:
    """For each kind of answer (number, date, name), the lowest bar on the quoted sentence's
    probability at which the spans shown reach SPAN_F1 on the fit half of SQuAD (1.0: never shown);
    with the share of answerable questions then shown and their F1."""
    shown: dict[str, list[tuple[float, float]]] = {}
    for case in (c for c in cases if c.source == "squad" and c.answerable and c.rows):
        probs = probabilities(params, case)
        top = int(reader_order(case, params, rank_weight)[0])
        rows = [r for r, hit in enumerate(case.hit_of_row) if hit == top]
        row = max(rows, key=lambda r: probs[r])
        span = answer_span(case.question, case.sentences[row])  # type: ignore[arg-type]
        if span is not None:
            kind = case.question.wanted.value  # type: ignore[attr-defined]
            shown.setdefault(kind, []).append((float(probs[row]), token_f1(span.text, case.answers)))
    bars, kept_all = {}, []
    for kind in ("number", "date", "name"):
        bars[kind] = 1.0
        for bar in np.arange(0.0, 1.0, 0.02):
            kept = [f1 for p, f1 in shown.get(kind, []) if p >= bar]
            if len(kept) >= 10 and np.mean(kept) >= SPAN_F1:
                bars[kind] = round(float(bar), 2)
                kept_all += kept
                break
    total = sum(1 for c in cases if c.source == "squad" and c.answerable) or 1
    return bars, len(kept_all) / total, float(np.mean(kept_all)) if kept_all else 0.0


# Signal groups for the ablation: each is dropped from both models in turn (its columns set to 0).
SIGNALS = {
    "answer type": ("type_supplied", "type_missing", "best_type_missing"),
    "focus coverage": (
        "sentence_focus",
        "passage_focus",
        "sentence_missing",
        "passage_missing",
        "best_focus",
        "best_missing",
        "best_passage_missing",
        "top_focus",
        "least_missing",
    ),
    "terms absent from the corpus": ("absent_from_corpus", "absent_unmatched"),
    "word neighbours": ("near_focus", "near_missing", "absent_unmatched"),
    "corpus subject": ("passage_subject", "best_subject"),
    "focus weight": ("focus_weight",),
}


def masked(cases: list[Case], names: tuple[str, ...]) -> list[Case]:
    """Copies of the cases with the named features set to 0 (sentence rows and `near`)."""
    sentence_cols = [FEATURES.index(n) for n in names if n in FEATURES]
    near_cols = [NEAR_FEATURES.index(n) for n in names if n in NEAR_FEATURES]
    out = []
    for case in cases:
        rows = [tuple(0.0 if i in sentence_cols else v for i, v in enumerate(row)) for row in case.rows]
        near = tuple(0.0 if i in near_cols else v for i, v in enumerate(case.near))
        copy = Case(**{**case.__dict__, "rows": rows, "near": near})  # type: ignore[arg-type]
        out.append(copy)
    return out


def fit_model(cases: list[Case], drop: tuple[str, ...] = ()) -> tuple[ReaderModel, dict[float, float]]:
    """Both regressions and the bars, fitted on `cases` (question-level features in `drop` zeroed);
    with the MRR@10 of every rank weight tried. Spans are chosen apart (`choose_span_thresholds`)."""
    sentence = Logistic.from_dict(fit_sentence(cases), FEATURES, WEIGHTS_FILE)
    rank_weight, mrr = choose_rank_weight(sentence, cases)
    decision = Logistic.from_dict(fit_decision(cases, sentence, drop), DECISION_FEATURES, WEIGHTS_FILE)
    unbarred = ReaderModel(sentence, decision, 0.0, {}, rank_weight)
    threshold = choose_answer_threshold(cases, unbarred, drop)
    return ReaderModel(sentence, decision, threshold, {}, rank_weight), mrr


def measure(cases: list[Case], model: ReaderModel, drop: tuple[str, ...] = ()) -> dict[str, float]:
    """hit@1 and MRR@10 of the reader's order, and the share declined by kind, on `cases`."""
    reciprocal = [
        reciprocal_rank(c, model.sentence, model.rank_weight) for c in cases if c.answerable and c.rows
    ]
    figures = {"hit@1": float(np.mean([r == 1 for r in reciprocal])), "MRR@10": float(np.mean(reciprocal))}
    for kind, (_, share) in declined_by_kind(cases, model, drop).items():
        figures[kind] = share
    return figures


def ablation(fit_cases: list[Case], test_cases: list[Case]) -> str:
    """A markdown table: each signal group dropped in turn, measured on `test_cases`."""
    full, _ = fit_model(fit_cases)
    first_gate_only = ReaderModel(full.sentence, full.decision, 0.0, {}, 0.0)
    rows = {
        "first gate only (no reader)": measure(test_cases, first_gate_only),
        "all signals": measure(test_cases, full),
    }
    for name, features in SIGNALS.items():
        model, _ = fit_model(masked(fit_cases, features), features)
        rows[f"without {name}"] = measure(masked(test_cases, features), model, features)
    columns = list(next(iter(rows.values())))
    lines = ["| reader | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, figures in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{figures[c]:.2f}" for c in columns) + " |")
    return "\n".join(lines)


def reproducing_command(argv: list[str]) -> str:
    """The command line that fits the same numbers: --cache and --ablation change no number."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--cache", "--ablation"):
            skip = True
            continue
        if not arg.startswith(("--cache=", "--ablation=")):
            kept.append(arg)
    return " ".join(["python -m bot.fit_reader", *kept])


def logistic_dict(model: Logistic) -> dict[str, object]:
    return {
        "features": list(model.features),
        "mean": list(model.mean),
        "scale": list(model.scale),
        "coef": list(model.coef),
        "intercept": model.intercept,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.fit_reader", description=__doc__.split("\n\n")[0])
    parser.add_argument("--squad", type=Path, default=ROOT.parent / "shared" / "external" / "squad")
    parser.add_argument("--squad-sample", type=int, default=1500, help="answerable SQuAD questions to use")
    parser.add_argument("--data", type=Path, default=ROOT / "tests" / "data")
    parser.add_argument("--out", type=Path, default=WEIGHTS_FILE)
    parser.add_argument(
        "--work",
        type=Path,
        default=Path(".squad-index") / "reduced-first",
        help="where the SQuAD copy is indexed (kept)",
    )
    parser.add_argument("--cache", type=Path, default=None, help="keep the collected features here (JSON)")
    parser.add_argument(
        "--ablation", type=Path, default=None, help="also print each signal's effect on this question set"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    progress: Callable[[str], None] = log.info
    if args.cache and args.cache.exists():
        cases = [case_from_json(item) for item in json.loads(args.cache.read_text(encoding="utf-8"))]
    else:
        cases = collect_all(args, progress)
        if args.cache:
            args.cache.write_text(json.dumps([case_to_json(c) for c in cases]), encoding="utf-8")
    model, mrr = fit_model(cases)
    span_bars, span_shown, span_f1 = choose_span_thresholds(model.sentence, cases, model.rank_weight)
    threshold, rank_weight = model.answer_threshold, model.rank_weight
    by_kind = {
        kind: {"questions": count, "declined": round(share, 3)}
        for kind, (count, share) in declined_by_kind(cases, model).items()
    }
    for kind, figures in by_kind.items():
        progress(f"{kind:>16}: {figures}")
    result = {
        "sentence": logistic_dict(model.sentence),
        "decision": logistic_dict(model.decision),
        "answer_threshold": round(threshold, 4),
        "span_thresholds": span_bars,
        "rank_weight": rank_weight,
        "fitted": {
            "command": reproducing_command(argv if argv is not None else sys.argv[1:]),
            "date": datetime.date.today().isoformat(),
            "our_questions": sum(c.source == "ours" for c in cases),
            "squad_questions": sum(c.source == "squad" for c in cases),
            "mrr_by_rank_weight": {str(k): round(v, 4) for k, v in mrr.items()},
            "squad_span_shown": round(span_shown, 4),
            "squad_span_f1": round(span_f1, 4),
            "declined_by_kind": by_kind,
        },
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    if args.ablation:
        test = our_cases_from(args, args.ablation, progress)
        print(ablation(cases, test))
    progress(f"wrote {args.out}: threshold {threshold:.3f}, rank weight {rank_weight}, span bars {span_bars}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
