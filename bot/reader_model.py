"""The reader's fitted numbers (bot/reader.json, written by `python -m bot.fit_reader`): the two
logistic regressions, the bars chosen with them, and the question-level features they decide on."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bot.reader import FEATURES, Question, Reading, focus_weight

WEIGHTS_FILE = Path(__file__).with_name("reader.json")

# What decides whether to answer at all: the best sentence's verdict and what it lacks, and how
# much of the question the best-covered candidate holds, across all candidates.
DECISION_FEATURES = (
    "best_logit",
    "best_focus",
    "best_missing",
    "best_passage_missing",
    "best_type_missing",
    "absent_from_corpus",
    "top_cosine",
    "top_focus",
    "least_missing",
    "best_subject",
    "near_focus",
    "near_missing",
    "absent_unmatched",
    "focus_weight",
)


@dataclass(frozen=True)
class Logistic:
    """A fitted logistic regression over standardised features."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float

    @classmethod
    def from_dict(cls, data: dict, expected: tuple[str, ...], path: Path) -> Logistic:  # type: ignore[type-arg]
        if tuple(data["features"]) != expected:
            raise ValueError(f"{path}: fitted for other features; run `python -m bot.fit_reader`")
        return cls(
            features=expected,
            mean=tuple(data["mean"]),
            scale=tuple(data["scale"]),
            coef=tuple(data["coef"]),
            intercept=float(data["intercept"]),
        )

    @classmethod
    def neutral(cls, features: tuple[str, ...]) -> Logistic:
        """Every row read as 0.5: for collecting features before a fit."""
        n = len(features)
        return cls(features, (0.0,) * n, (1.0,) * n, (0.0,) * n, 0.0)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """The probability for each row of features."""
        if len(rows) == 0:
            return np.zeros(0)
        z = ((rows - np.asarray(self.mean)) / np.asarray(self.scale)) @ np.asarray(self.coef) + self.intercept
        return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


@dataclass(frozen=True)
class ReaderModel:
    """The fitted reader (bot/reader.json): does a sentence answer (`sentence`), does the question
    get an answer at all (`decision`), and the bars chosen with them."""

    sentence: Logistic
    decision: Logistic
    answer_threshold: float
    span_thresholds: dict[str, float]  # by answer type: the quote's probability needed to show a span
    rank_weight: float

    @classmethod
    def load(cls, path: Path = WEIGHTS_FILE) -> ReaderModel:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            sentence=Logistic.from_dict(data["sentence"], FEATURES, path),
            decision=Logistic.from_dict(data["decision"], DECISION_FEATURES, path),
            answer_threshold=float(data["answer_threshold"]),
            span_thresholds={k: float(v) for k, v in data["span_thresholds"].items()},
            rank_weight=float(data["rank_weight"]),
        )

    @classmethod
    def neutral(cls) -> ReaderModel:
        """Reads every sentence as 0.5 and answers everything: for collecting features to fit."""
        return cls(Logistic.neutral(FEATURES), Logistic.neutral(DECISION_FEATURES), 0.0, {}, 0.0)

    def confidence(
        self, question: Question, readings: Sequence[Reading], near: tuple[float, float, float]
    ) -> float:
        """P(the candidates answer the question), from the question-level features."""
        rows = np.asarray([r.features for r in readings], dtype=np.float64).reshape(-1, len(FEATURES))
        probabilities = np.asarray([r.probability for r in readings])
        features = decision_features(rows, probabilities, near, focus_weight(question))
        return float(self.decision(np.asarray([features]))[0])


def decision_features(
    rows: np.ndarray, probabilities: np.ndarray, near: tuple[float, float, float], focus_weight: float
) -> tuple[float, ...]:
    """The question-level features, in the order of DECISION_FEATURES, from its candidates' rows
    and the word-by-word reading of the closest sentences (`neighbour_coverage`)."""
    if len(rows) == 0:
        return (-30.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, *near, focus_weight)
    column = {name: i for i, name in enumerate(FEATURES)}
    best = rows[int(np.argmax(probabilities))]
    return (
        logit(float(probabilities.max())),
        float(best[column["sentence_focus"]]),
        float(best[column["sentence_missing"]]),
        float(best[column["passage_missing"]]),
        float(best[column["type_missing"]]),
        float(best[column["absent_from_corpus"]]),
        float(rows[:, column["sentence_cosine"]].max()),
        float(rows[:, column["sentence_focus"]].max()),
        float(rows[:, column["sentence_missing"]].min()),
        float(best[column["passage_subject"]]),
        *near,
        focus_weight,
    )


@functools.cache
def default_model() -> ReaderModel:
    return ReaderModel.load()


def logit(p: float) -> float:
    p = min(max(p, 1e-9), 1 - 1e-9)
    return math.log(p / (1 - p))
