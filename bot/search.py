"""Hybrid retrieval: dense (FAISS) and BM25 candidates, fused into one ranking of passages."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bot.models import Hit
from bot.store import Index


@dataclass(frozen=True)
class FusionWeights:
    """How much BM25 adds to cosine similarity; found on data we wrote, not on the evaluation sets."""

    lexical: float = 0.35
    depth: int = 50


def hybrid_search(
    index: Index, query_vector: np.ndarray, question: str, k: int, weights: FusionWeights
) -> list[Hit]:
    """The `k` best passages for a question, by cosine similarity plus scaled BM25.

    Candidates are the union of the dense and the BM25 top `depth`; each candidate gets both
    scores. BM25 is scaled by its best value for this question, so it ranks within a question
    while the dense score keeps its absolute meaning (used for abstention).
    """
    if not index.passages:
        return []
    dense_rows, _ = index.search_dense(query_vector, weights.depth)
    lexical_all = index.lexical.scores(question)
    lexical_rows = np.argsort(-lexical_all)[: weights.depth]
    lexical_rows = lexical_rows[lexical_all[lexical_rows] > 0]
    candidates = np.unique(np.concatenate([dense_rows, lexical_rows]).astype(np.int64))

    dense = index.dense_scores(query_vector, candidates)
    lexical = lexical_all[candidates]
    top = float(lexical.max()) if len(lexical) else 0.0
    lexical_scaled = lexical / top if top > 0 else np.zeros_like(lexical)
    fused = dense + weights.lexical * lexical_scaled
    order = np.argsort(-fused, kind="stable")[:k]
    return [
        Hit(
            passage=index.passages[int(candidates[i])],
            row=int(candidates[i]),
            score=float(fused[i]),
            dense=float(dense[i]),
            lexical=float(lexical_scaled[i]),
        )
        for i in order
    ]
