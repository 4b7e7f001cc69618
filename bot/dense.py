"""The dense index: passage vectors in FAISS, exact (float16) or IVF above a size. Only this module
imports faiss."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bot.manifest import APPROXIMATE, EXACT, DenseSettings

log = logging.getLogger(__name__)

# IVF: about √n lists (a power of two), trained on up to 64 vectors a list, half of them searched.
# Questions are not passages (the queries lie outside the vectors' distribution), so far more lists
# must be searched than for passage-to-passage search: at 100k passages half the lists gave recall@10
# 0.984 against exact search in 3.5 ms, a quarter 0.94 (benchmarks/, docs/BENCHMARKS.md).
IVF_TRAIN_PER_LIST = 64
IVF_MIN_TRAIN_PER_LIST = 39  # what FAISS's k-means asks for
IVF_PROBE_SHARE = 2
# Lists trained for n vectors still serve 2n; past that an update retrains them (a full re-index
# of the vectors already stored, no embedding).
IVF_RETRAIN_GROWTH = 2.0


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """One question at a time is searched on one thread.

    A single-vector search is too small to gain from OpenMP, and on a busy 2-core machine its
    thread team waits for a core: the benchmark measured a 100k exact search at ~35 ms with two
    threads and ~7 ms with one. The setting is per calling thread and is restored (torch shares it).
    """
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def dense_settings(count: int, exact_limit: int) -> DenseSettings:
    """Exact search up to `exact_limit` passages; IVF lists sized for `count` vectors above it."""
    if count <= exact_limit:
        return DenseSettings(EXACT)
    lists = 2 ** max(4, round(math.log2(math.sqrt(count))))
    lists = min(lists, max(1, count // IVF_MIN_TRAIN_PER_LIST))  # small indexes (tests): fewer lists
    probes = max(1, lists // IVF_PROBE_SHARE)
    return DenseSettings(APPROXIMATE, lists=lists, probes=probes, trained_on=count)


def new_dense_index(
    vectors: np.ndarray,
    exact_limit: int,
    ids: np.ndarray | None = None,
    settings: DenseSettings | None = None,
):  # type: ignore[no-untyped-def]
    """A FAISS index over unit vectors under explicit ids: exact (float16) or IVF above `exact_limit`.

    Inner product of unit vectors is cosine similarity, so scores are comparable across questions
    and can be thresholded. Vectors are stored as float16 (half the memory; recall@10 against
    float32 exact search ≥ 0.99, measured in benchmarks/), and every index supports adding and
    removing ids, so an update never rebuilds it.
    """
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dimension = vectors.shape[1]
    ids = np.arange(len(vectors), dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
    settings = settings or dense_settings(len(vectors), exact_limit)
    fp16 = faiss.ScalarQuantizer.QT_fp16
    if settings.kind == APPROXIMATE:
        quantizer = faiss.IndexFlatIP(dimension)
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, dimension, settings.lists, fp16, faiss.METRIC_INNER_PRODUCT, False
        )
        sample = _training_sample(vectors, settings.lists * IVF_TRAIN_PER_LIST)
        index.train(sample)
        # A hash table from id to list entry: reconstructing by id, and removing ids, in O(1).
        index.set_direct_map_type(faiss.DirectMap.Hashtable)
        index.nprobe = settings.probes
    else:
        index = faiss.IndexIDMap2(faiss.IndexScalarQuantizer(dimension, fp16, faiss.METRIC_INNER_PRODUCT))
    if len(vectors):
        index.add_with_ids(vectors, ids)
    return index


def updated(
    index: Any,
    old: DenseSettings,
    old_ids: np.ndarray,
    keep: np.ndarray,
    new_ids: np.ndarray,
    new_vectors: np.ndarray,
    stored_vectors: Callable[[np.ndarray], np.ndarray],
    exact_limit: int,
) -> tuple[Any, DenseSettings]:
    """The live index with rows `keep` kept and the new vectors added under `new_ids`, and its settings.

    Updated in place: the ids of dropped rows are removed and the new vectors added. It is rebuilt
    from its stored vectors (`stored_vectors(rows)`) only when the exact/approximate choice changes
    or the IVF lists were trained for far fewer vectors.
    """
    ids = np.concatenate([old_ids[keep], new_ids])
    total = len(ids)
    settings = dense_settings(total, exact_limit)
    rebuild = settings.kind != old.kind or (
        old.kind == APPROXIMATE and total > IVF_RETRAIN_GROWTH * max(old.trained_on, 1)
    )
    if rebuild:
        log.info("re-indexing %d stored vectors (%s → %s)", total, old.kind, settings.kind)
        vectors = np.vstack([stored_vectors(keep), new_vectors]) if total else new_vectors
        return new_dense_index(vectors, exact_limit, ids, settings), settings
    dropped = np.setdiff1d(old_ids, old_ids[keep], assume_unique=True)
    if len(dropped):
        index.remove_ids(dropped)
    if len(new_ids):
        index.add_with_ids(np.ascontiguousarray(new_vectors, dtype=np.float32), new_ids)
    return index, old


def _training_sample(vectors: np.ndarray, size: int) -> np.ndarray:
    if len(vectors) <= size:
        return vectors
    rows = np.random.default_rng(0).choice(len(vectors), size=size, replace=False)
    return vectors[np.sort(rows)]


def read_index(path: Path):  # type: ignore[no-untyped-def]
    import faiss

    return faiss.read_index(str(path))


def write_index(index: Any, path: Path) -> None:
    import faiss

    faiss.write_index(index, str(path))
