"""Hybrid retrieval: dense (FAISS) and BM25 candidates, scored on passage and sentence level, fused.

A small embedding model matches a question best against the one sentence that answers it, and
worst against names, numbers and rare words; so each candidate passage is scored by four
signals: cosine similarity of the whole passage, of its best sentence, BM25, and the share of the
question's content words found in its best-covered sentence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bot.lexical import coverage, terms
from bot.models import Hit
from bot.store import Index


@dataclass(frozen=True)
class FusionWeights:
    """Weights of the four signals. Chosen on our own question set (tests/data/calibration-questions.jsonl)
    by grid search for MRR@10; the shared evaluation questions were only used to check the result."""

    passage: float = 0.5
    sentence: float = 0.75
    lexical: float = 0.2
    coverage: float = 0.1
    depth: int = 50


def hybrid_search(
    index: Index, query_vector: np.ndarray, question: str, k: int, weights: FusionWeights
) -> list[Hit]:
    """The `k` best passages for a question, best first.

    Candidates are the union of the dense and the BM25 top `depth`; every candidate then gets all
    four signals. BM25 is scaled by its best value among the candidates, so it ranks within a
    question, while the similarities keep their absolute meaning (abstention reads them).
    """
    if not index.passages:
        return []
    dense_rows, _ = index.search_dense(query_vector, weights.depth)
    lexical_all = index.lexical.scores(question)
    lexical_rows = _top(lexical_all, weights.depth)
    lexical_rows = lexical_rows[lexical_all[lexical_rows] > 0]
    candidates = np.unique(np.concatenate([dense_rows, lexical_rows]).astype(np.int64))

    dense = index.dense_scores(query_vector, candidates)
    sentence_rows = [index.sentence_rows[int(row)] for row in candidates]
    sentence_similarity = _similarities(index, [r for rows in sentence_rows for r in rows], query_vector)
    question_terms = frozenset(terms(question))
    best_sentence = np.zeros(len(candidates), dtype=np.float32)
    best_coverage = np.zeros(len(candidates), dtype=np.float32)
    passages = [index.passages[int(row)] for row in candidates]  # parsed once: each is a file read
    start = 0
    for i, passage in enumerate(passages):
        count = len(sentence_rows[i])
        if count:
            best_sentence[i] = float(sentence_similarity[start : start + count].max())
        start += count
        texts = passage.sentence_texts()
        best_coverage[i] = max((coverage(question_terms, t) for t in texts), default=0.0)
    lexical = lexical_all[candidates]
    top = float(lexical.max()) if len(lexical) else 0.0
    lexical_scaled = lexical / top if top > 0 else np.zeros_like(lexical)

    fused = (
        weights.passage * dense
        + weights.sentence * best_sentence
        + weights.lexical * lexical_scaled
        + weights.coverage * best_coverage
    )
    order = np.argsort(-fused, kind="stable")[:k]
    return [
        Hit(
            passage=passages[i],
            row=int(candidates[i]),
            score=float(fused[i]),
            dense=float(dense[i]),
            sentence=float(best_sentence[i]),
            lexical=float(lexical_scaled[i]),
            coverage=float(best_coverage[i]),
        )
        for i in order
    ]


def _top(scores: np.ndarray, depth: int) -> np.ndarray:
    """Rows of the `depth` highest scores, best first (a partial sort: the corpus may be large)."""
    if len(scores) > depth:
        part = np.argpartition(-scores, depth - 1)[:depth]
        return part[np.argsort(-scores[part], kind="stable")]
    return np.argsort(-scores, kind="stable")


def _similarities(index: Index, rows: list[int], query_vector: np.ndarray) -> np.ndarray:
    """Cosine similarity of the query with the sentences at `rows`, only those: the sentence table
    holds ~5 vectors a passage, and scoring all of it made a question's cost grow with the corpus."""
    if not rows:
        return np.zeros(0, dtype=np.float32)
    vectors = np.asarray(index.sentence_vectors[np.asarray(rows, dtype=np.int64)], dtype=np.float32)
    return vectors @ query_vector.astype(np.float32)
