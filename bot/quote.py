"""Choosing the sentence of a passage that answers the question: what gets quoted."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bot.lexical import terms
from bot.models import Passage, Sentence

# Sentences shorter than this many words say too little alone ("They added:"); quote the next too.
_SHORT_QUOTE_WORDS = 8


@dataclass(frozen=True)
class Quote:
    """The quoted span of a passage, its offsets in the article's cleaned text, and how well it matched."""

    text: str
    start: int
    end: int
    score: float


def coverage(question_terms: set[str], text: str) -> float:
    """Share of the question's content words that occur in the text (0 when it has none)."""
    if not question_terms:
        return 0.0
    return len(question_terms & set(terms(text))) / len(question_terms)


def choose_quote(
    passage: Passage,
    sentence_vectors: np.ndarray,
    query_vector: np.ndarray,
    question_terms: set[str],
    lexical_weight: float = 0.3,
) -> Quote:
    """The passage's best sentence for the question: cosine similarity plus word overlap.

    `sentence_vectors` holds one row per sentence of the passage, in order. A very short best
    sentence is joined with the one after it so the quote stands on its own.
    """
    texts = passage.sentence_texts()
    if not texts:
        return Quote(passage.text, passage.start, passage.end, 0.0)
    similarity = sentence_vectors.astype(np.float32) @ query_vector.astype(np.float32)
    scores = [
        float(s) + lexical_weight * coverage(question_terms, t)
        for s, t in zip(similarity, texts, strict=True)
    ]
    best = int(np.argmax(scores))
    span: list[Sentence] = [passage.sentences[best]]
    if len(texts[best].split()) < _SHORT_QUOTE_WORDS and best + 1 < len(texts):
        span.append(passage.sentences[best + 1])
    start, end = span[0].start, span[-1].end
    return Quote(passage.text[start - passage.start : end - passage.start], start, end, scores[best])
