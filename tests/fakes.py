"""A deterministic fake embedding model, registered through the real `load_embedder` path.

Words are hashed into a fixed number of dimensions (a bag of words), so texts that share words
are similar and identical texts are identical. It counts how many texts it has encoded, which is
how tests prove that an update embeds only what changed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from bot.embed import register_embedder

FAKE_MODEL = "test-hash-embedder"
_WORD = re.compile(r"\w+|[^\w\s]")


class HashEmbedder:
    """Bag of hashed words; one word piece per word or punctuation mark."""

    def __init__(self, dimension: int = 64, max_tokens: int = 254) -> None:
        self.name = FAKE_MODEL
        self.dimension = dimension
        self.max_tokens = max_tokens
        self.encoded: list[str] = []

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        self.encoded.extend(texts)
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                digest = hashlib.blake2b(word.encode(), digest_size=4).digest()
                vectors[row, int.from_bytes(digest, "little") % self.dimension] += 1.0
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(_WORD.findall(text)) for text in texts]


def install_fake_embedder() -> HashEmbedder:
    """Register a fresh fake under FAKE_MODEL and return it (load_embedder's cache is cleared)."""
    embedder = HashEmbedder()
    register_embedder(FAKE_MODEL, lambda: embedder)
    return embedder
