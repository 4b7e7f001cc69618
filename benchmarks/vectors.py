"""Embeddings for the benchmark's corpora: a disk cache keyed by text hash, and derived vectors.

`BenchEmbedder` is an `Embedder` with the real model's name, dimension and tokenizer (so the
indexes it builds are ordinary indexes the CLI loads and answers from, with real question vectors).
Its `encode` answers each text in one of three ways, and counts each:

- **cached**: the real model embedded this text in an earlier run (or earlier in this one); the
  vector is read from ~/.cache/protest-bot-bench, keyed by SHA-1 of the text.
- **encoded**: the real model embeds it now (and, unless `store=False`, the cache keeps it).
- **derived** (only with `derive=True`, used for the 10k and 100k points): the text is made of
  synthetic sentences (`synth.py`), each the halves of two real pool sentences. A sentence's vector
  is the normalized sum of its two pool sentences' real vectors; a passage's is the normalized mean
  of its sentences' vectors. No model runs, so a 100k-passage index is built in minutes, with
  vectors spread like real sentence embeddings rather than random points. `fidelity()` reports how
  close this comes to the real model on texts that have both.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from pathlib import Path

import blingfire
import numpy as np

from benchmarks.synth import Generator

DEFAULT_CACHE = Path(os.environ.get("PROTEST_BOT_BENCH_CACHE", Path.home() / ".cache" / "protest-bot-bench"))
KEY_BYTES = 20


def text_key(text: str) -> bytes:
    return hashlib.sha1(text.encode("utf-8")).digest()


class VectorCache:
    """Text hash → float32 vector, in two plain .npy files (keys as uint8 rows, vectors), loaded whole."""

    def __init__(self, folder: Path, model: str, dimension: int) -> None:
        slug = model.replace("/", "__")
        self.folder = folder / f"vectors-{slug}-{dimension}"
        self.dimension = dimension
        self._rows: dict[bytes, int] = {}
        self._vectors = np.zeros((0, dimension), dtype=np.float32)
        self._pending: list[np.ndarray] = []
        keys_path, vectors_path = self.folder / "keys.npy", self.folder / "vectors.npy"
        if keys_path.exists() and vectors_path.exists():
            keys = np.load(keys_path, allow_pickle=False)
            vectors = np.load(vectors_path, allow_pickle=False)
            if keys.shape == (len(vectors), KEY_BYTES) and vectors.shape[1:] == (dimension,):
                self._vectors = vectors
                data = keys.tobytes()
                self._rows = {data[i * KEY_BYTES : (i + 1) * KEY_BYTES]: i for i in range(len(keys))}

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, key: bytes) -> np.ndarray | None:
        row = self._rows.get(key)
        if row is None:
            return None
        if row < len(self._vectors):
            return self._vectors[row]
        return self._pending[row - len(self._vectors)]

    def put(self, key: bytes, vector: np.ndarray) -> None:
        if key in self._rows:
            return
        self._rows[key] = len(self._vectors) + len(self._pending)
        self._pending.append(np.asarray(vector, dtype=np.float32))

    def save(self) -> None:
        """Write what was added (aside, then renamed: a killed run keeps the previous cache)."""
        if not self._pending:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        self._vectors = np.vstack([self._vectors, np.vstack(self._pending)])
        self._pending = []
        keys = np.zeros((len(self._rows), KEY_BYTES), dtype=np.uint8)
        for key, row in self._rows.items():
            keys[row] = np.frombuffer(key, dtype=np.uint8)
        for name, array in (("vectors.npy", self._vectors), ("keys.npy", keys)):
            aside = self.folder / f".{name}.tmp.npy"
            np.save(aside, array, allow_pickle=False)
            os.replace(aside, self.folder / name)


class BenchEmbedder:
    """The real model behind a cache, optionally deriving vectors of synthetic text (module doc)."""

    def __init__(self, model, cache: VectorCache | None, generator: Generator | None = None) -> None:  # type: ignore[no-untyped-def]
        self.model = model
        self.cache = cache
        self.generator = generator
        self.derive = False
        self.store = True
        self.name = model.name
        self.dimension = model.dimension
        self.max_tokens = model.max_tokens
        self._pool: np.ndarray | None = None
        self.reset_counts()

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.model.count_tokens(texts)

    def reset_counts(self) -> None:
        self.counts = {"cached": 0, "encoded": 0, "derived": 0}
        self.seconds = 0.0  # inside encode: cache look-ups, derivation and the model
        self.model_seconds = 0.0

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        began = time.perf_counter()
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        missing: list[int] = []
        for i, text in enumerate(texts):
            vector = self.cache.get(text_key(text)) if self.cache is not None else None
            if vector is None:
                missing.append(i)
            else:
                out[i] = vector
        self.counts["cached"] += len(texts) - len(missing)
        if missing and self.derive:
            derived = self.derived([texts[i] for i in missing])
            still = []
            for i, vector in zip(missing, derived, strict=True):
                if vector is None:
                    still.append(i)
                else:
                    out[i] = vector
            self.counts["derived"] += len(missing) - len(still)
            missing = still
        if missing:
            self.counts["encoded"] += len(missing)
            model_began = time.perf_counter()
            vectors = self.model.encode([texts[i] for i in missing], progress=progress)
            self.model_seconds += time.perf_counter() - model_began
            for i, vector in zip(missing, vectors, strict=True):
                out[i] = vector
                if self.cache is not None and self.store:
                    self.cache.put(text_key(texts[i]), vector)
        self.seconds += time.perf_counter() - began
        return out

    # Derived vectors ---------------------------------------------------------------------------

    def pool_vectors(self) -> np.ndarray:
        """Real vectors of every pool sentence (embedded once, then cached)."""
        if self._pool is None:
            assert self.generator is not None and self.cache is not None
            sentences = self.generator.pool.sentences
            todo = [s for s in sentences if self.cache.get(text_key(s)) is None]
            for start in range(0, len(todo), 256):
                batch = todo[start : start + 256]
                for text, vector in zip(batch, self.model.encode(batch), strict=True):
                    self.cache.put(text_key(text), vector)
            self.cache.save()
            self._pool = np.vstack([self.cache.get(text_key(s)) for s in sentences])  # type: ignore[misc]
        return self._pool

    def recipes_of(self, text: str) -> list[tuple[int, int]] | None:
        """The pool sentences behind each synthetic sentence of a text, or None for other text."""
        assert self.generator is not None
        recipes = self.generator.recipes
        single = recipes.get(text)
        if single is not None:
            return [single]
        found = []
        for line in text.split("\n"):
            if not line.strip():
                continue
            for sentence in blingfire.text_to_sentences(line).split("\n"):
                recipe = recipes.get(sentence)
                if recipe is None:
                    return None
                found.append(recipe)
        return found or None

    def derived(self, texts: Sequence[str]) -> list[np.ndarray | None]:
        """Derived vectors (module doc), None for texts that are not synthetic."""
        if self.generator is None:
            return [None] * len(texts)
        pool = self.pool_vectors()
        per_text = [self.recipes_of(t) for t in texts]
        flat = [r for recipes in per_text if recipes for r in recipes]
        if not flat:
            return [None] * len(texts)
        pairs = np.array(flat, dtype=np.int64)
        sentences = pool[pairs[:, 0]] + pool[pairs[:, 1]]
        sentences /= np.maximum(np.linalg.norm(sentences, axis=1, keepdims=True), 1e-12)
        out: list[np.ndarray | None] = []
        at = 0
        for recipes in per_text:
            if not recipes:
                out.append(None)
                continue
            vector = sentences[at : at + len(recipes)].mean(axis=0)
            at += len(recipes)
            out.append(vector / max(float(np.linalg.norm(vector)), 1e-12))
        return out


def fidelity(embedder: BenchEmbedder, texts: Sequence[str]) -> dict[str, float]:
    """Cosine between derived and real vectors, on texts the cache holds real vectors for."""
    assert embedder.cache is not None
    real = [embedder.cache.get(text_key(t)) for t in texts]
    derived = embedder.derived(texts)
    sims = [float(r @ d) for r, d in zip(real, derived, strict=True) if r is not None and d is not None]
    if not sims:
        return {"texts": 0}
    return {
        "texts": len(sims),
        "cosine_median": float(np.median(sims)),
        "cosine_p10": float(np.percentile(sims, 10)),
    }
