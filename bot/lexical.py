"""Lexical matching: the terms of a text, and a BM25 index over passages (bm25s, plain files).

Names, numbers and rare words (Palantir, 28, Orlando) are where a small embedding model is
weakest; BM25 catches them. Only this module imports bm25s.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

_TOKEN = re.compile(r"\w+", re.UNICODE)

# Lucene's English stop words plus the words every question is made of: they say what kind of
# answer is wanted, not what it is about, so they must not count as overlap with a passage.
_QUESTION_WORDS = frozenset(
    [
        "what",
        "whats",
        "who",
        "whom",
        "whose",
        "which",
        "when",
        "where",
        "why",
        "how",
        "did",
        "does",
        "do",
        "done",
        "doing",
        "has",
        "have",
        "had",
        "having",
        "was",
        "were",
        "been",
        "being",
        "is",
        "am",
        "can",
        "could",
        "would",
        "should",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "according",
        "say",
        "says",
        "said",
        "tell",
        "told",
        "me",
        "my",
        "i",
        "you",
        "your",
        "we",
        "our",
        "us",
        "they",
        "them",
        "their",
        "he",
        "him",
        "his",
        "she",
        "her",
        "its",
        "about",
        "much",
        "many",
        "any",
        "some",
        "there",
        "here",
        "also",
        "than",
        "more",
        "most",
        "very",
        "just",
        "so",
        "from",
        "'s",
        "s",
    ]
)


@functools.cache
def _bm25s():  # type: ignore[no-untyped-def]
    import logging

    import bm25s

    # bm25s sets its own logger to DEBUG on import, which would print on every build.
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


@functools.cache
def stop_words() -> frozenset[str]:
    """Words that say nothing of what a text is about: English stop words and question words."""
    from bm25s.stopwords import STOPWORDS_EN

    _bm25s()

    return frozenset(STOPWORDS_EN) | _QUESTION_WORDS


@functools.cache
def _stemmer():  # type: ignore[no-untyped-def]
    import Stemmer

    return Stemmer.Stemmer("english")


def terms(text: str) -> list[str]:
    """Lower-cased, stemmed content words: "Employees signed" → ["employe", "sign"]."""
    stop = stop_words()
    words = [w for w in _TOKEN.findall(text.lower().replace("’", "'")) if w not in stop]
    return _stemmer().stemWords(words)


@functools.lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """One lower-case word stemmed as the index stems it."""
    return _stemmer().stemWord(word)


@functools.lru_cache(maxsize=65536)
def term_set(text: str) -> frozenset[str]:
    """`terms` as a set, cached: the same sentences are scored again and again."""
    return frozenset(terms(text))


def coverage(question_terms: frozenset[str], text: str) -> float:
    """Share of the question's content words that occur in the text (0 when the question has none)."""
    if not question_terms:
        return 0.0
    return len(question_terms & term_set(text)) / len(question_terms)


class LexicalIndex:
    """BM25 (Lucene variant) over passage texts."""

    def __init__(self, retriever) -> None:  # type: ignore[no-untyped-def]
        self._retriever = retriever

    @classmethod
    def build(cls, texts: Sequence[str]) -> LexicalIndex:
        retriever = _bm25s().BM25(method="lucene", k1=1.2, b=0.75)
        # create_empty_token keeps a passage with no content words from breaking the index.
        retriever.index([terms(t) for t in texts], show_progress=False)
        return cls(retriever)

    def save(self, folder: Path) -> None:
        self._retriever.save(str(folder), show_progress=False)

    @classmethod
    def load(cls, folder: Path) -> LexicalIndex:
        return cls(_bm25s().BM25.load(str(folder), show_progress=False, mmap=False, verbosity=0))

    def document_shares(self) -> dict[str, float]:
        """For every term, the share of passages that hold it (from the index's term columns)."""
        indptr = np.asarray(self._retriever.scores["indptr"])
        size = max(int(self._retriever.scores["num_docs"]), 1)
        counts = np.diff(indptr)
        return {
            t: float(counts[i]) / size for t, i in self._retriever.vocab_dict.items() if t and i < len(counts)
        }

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every passage for the query (zeros when no query term is known)."""
        query_terms = [t for t in terms(query) if t in self._retriever.vocab_dict]
        size = self._retriever.scores["num_docs"]
        if not query_terms:
            return np.zeros(size, dtype=np.float32)
        return np.asarray(self._retriever.get_scores(query_terms), dtype=np.float32)
