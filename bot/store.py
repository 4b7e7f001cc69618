"""The index on disk: a manifest, FAISS vectors, passages, sentence vectors and BM25, written atomically.

Layout of the index folder:

    CURRENT                   name of the live version folder (replaced atomically)
    v-<stamp>/                one complete index
        manifest.json         format version, model, dimension, chunking, dense index settings,
                              articles and their hashes, file sizes and SHA-256 digests
        passages.jsonl        one passage a line (text, offsets, sentence offsets), grouped by article
                              in the manifest's article order
        passage_offsets.npy   byte offset of each line (n + 1), so a passage is read when it is needed
        ids.npy               the FAISS id of each passage row, increasing
        passage_keys.npy      BLAKE2b-128 of each passage text: what an update reuses vectors by
        sentence_rows.npy     for each passage, its sentences' rows in sentences.npy (flat, int32)
        sentence_row_offsets.npy  where each passage's rows begin in sentence_rows.npy (n + 1)
        sentences.npy         sentence vectors, float16, for choosing the quote inside a passage
        sentence_keys.npy     BLAKE2b-128 of each sentence text
        dense.faiss           passage vectors under their ids: exact float16 inner product, or IVF
                              (approximate) above the configured size
        bm25/                 bm25s arrays and vocabulary (no pickle)

A version folder is written beside the live one and only then swapped in through CURRENT, so a
crash at any point leaves the previous index loadable. An update writes a new version too, but
builds it from the live one: passage lines are copied as bytes, kept vectors stay in the FAISS
index (ids of removed passages are removed, new ones added), and only new text was embedded.

Loading is cheap at any size: passages and sentence vectors are read (pread) when a search needs
them, so a serving process holds the FAISS index, BM25 and small arrays in memory, not every
passage, and the files' pages stay in the kernel's page cache, outside the process. Because
a passage line is parsed only when a question reaches it, every file's SHA-256 is checked at
load (about 0.3 s per GB): damage anywhere is a clear "rebuild" then, not a crash mid-answer.
The manifest is bot/manifest.py, the tables bot/tables.py, the FAISS index bot/dense.py; this module
loads an index and writes new versions.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bot import dense as dense_index
from bot.errors import IndexCorruptError, IndexMismatchError, IndexUnavailableError
from bot.manifest import (
    APPROXIMATE,
    BM25,
    CHECKED_FILES,
    CURRENT,
    DENSE,
    FORMAT_VERSION,
    IDS,
    MANIFEST,
    PASSAGE_KEYS,
    PASSAGE_OFFSETS,
    PASSAGES,
    SENTENCE_KEYS,
    SENTENCE_ROW_OFFSETS,
    SENTENCE_ROWS,
    SENTENCES,
    Manifest,
    check_files,
    current_version,
    file_digest,
    read_manifest,
)
from bot.models import Passage
from bot.tables import (
    KEY_BYTES,
    PassageTable,
    RowTable,
    VectorFile,
    passage_line,
    renumbered_sentence_rows,
    runs,
    sentence_table_keys,
    text_keys,
    write_gathered,
    write_kept_and_new_passages,
    write_lines,
    write_offsets,
    write_sentence_rows,
)

if TYPE_CHECKING:
    from bot.lexical import LexicalIndex

log = logging.getLogger(__name__)


@dataclass
class Index:
    """A loaded index: everything a search needs, in memory or read from its files on use."""

    manifest: Manifest
    passages: PassageTable
    sentence_rows: RowTable
    dense: Any  # faiss.Index
    sentence_vectors: VectorFile | np.ndarray
    lexical: LexicalIndex
    ids: np.ndarray | None = None  # FAISS id of each row, increasing (None: the row number itself)
    folder: Path | None = None

    def _row_ids(self) -> np.ndarray:
        return self.ids if self.ids is not None else np.arange(len(self.passages), dtype=np.int64)

    def search_dense(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows and cosine similarities of the `k` passages nearest to a unit query vector."""
        k = min(k, len(self.passages))
        if k == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        with dense_index.one_thread():
            scores, found = self.dense.search(query.reshape(1, -1).astype(np.float32), k)
        keep = found[0] >= 0
        rows = np.searchsorted(self._row_ids(), found[0][keep])
        return rows.astype(np.int64), scores[0][keep]

    def dense_scores(self, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Cosine similarity of the query with the passages at `rows` (as stored, whatever the index type)."""
        if len(rows) == 0:
            return np.zeros(0, dtype=np.float32)
        ids = self._row_ids()[np.asarray(rows, dtype=np.int64)]
        vectors = self.dense.reconstruct_batch(ids)
        return vectors @ query.astype(np.float32)

    def passage_vectors(self) -> np.ndarray:
        """All passage vectors, in row order (for reuse when the index is updated)."""
        if len(self.passages) == 0:
            return np.zeros((0, self.manifest.dimension), dtype=np.float32)
        return self.dense.reconstruct_batch(self._row_ids())

    def vectors_of(self, rows: np.ndarray) -> np.ndarray:
        """The stored vectors of some passage rows, in the order given."""
        if len(rows) == 0:
            return np.zeros((0, self.manifest.dimension), dtype=np.float32)
        return self.dense.reconstruct_batch(self._row_ids()[np.asarray(rows, dtype=np.int64)])

    def passage_keys(self) -> np.ndarray:
        """The key of each passage text, by row ((n, 16) uint8)."""
        return self._keys(PASSAGE_KEYS, len(self.passages))

    def sentence_keys(self) -> np.ndarray:
        """The key of each sentence text, by sentence row ((n, 16) uint8)."""
        return self._keys(SENTENCE_KEYS, len(self.sentence_vectors))

    def _keys(self, name: str, count: int) -> np.ndarray:
        if self.folder is None:
            raise IndexUnavailableError("this index was not loaded from disk")
        keys = np.load(self.folder / name, mmap_mode="r", allow_pickle=False)
        if keys.shape != (count, KEY_BYTES):
            raise IndexCorruptError(f"the index file {name} disagrees with the index")
        return keys


def load(root: Path, model: str) -> Index:
    """Load the live index, checking the manifest against the model and every file against it."""
    manifest = read_manifest(root)
    if manifest.model != model:
        raise IndexMismatchError(
            f"the index was built with model {manifest.model!r}, not {model!r}",
            advice=f"run `protest-bot index build --model {model}` or pass --model {manifest.model}",
        )
    folder = current_version(root)
    check_files(folder, manifest)
    try:
        offsets = np.load(folder / PASSAGE_OFFSETS, allow_pickle=False)
        passages = PassageTable(folder / PASSAGES, offsets)
        rows = RowTable(
            np.load(folder / SENTENCE_ROWS, allow_pickle=False),
            np.load(folder / SENTENCE_ROW_OFFSETS, allow_pickle=False),
        )
        ids = np.load(folder / IDS, allow_pickle=False)
        dense = dense_index.read_index(folder / DENSE)
        sentence_vectors = VectorFile(folder / SENTENCES)
        from bot.lexical import LexicalIndex

        lexical = LexicalIndex.load(folder / BM25)
        if len(passages):  # the first and last lines parse: the offsets fit the file
            _ = passages[0], passages[len(passages) - 1]
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, IndexError) as exc:
        log.debug("index load failed", exc_info=exc)
        raise IndexCorruptError(f"the index in {root}/ is corrupt") from None
    n = manifest.passages
    counts_agree = (
        len(passages) == n == dense.ntotal == len(ids) == len(rows)
        and dense.d == manifest.dimension
        and sentence_vectors.shape == (manifest.sentences, manifest.dimension)
        and int(offsets[-1]) == manifest.files.get(PASSAGES)
        and (len(rows.flat) == 0 or int(rows.flat.max()) < manifest.sentences)
        and bool(np.all(ids[1:] > ids[:-1]))
    )
    if not counts_agree:
        raise IndexCorruptError(f"the index files in {root}/ disagree with its manifest")
    if manifest.dense.kind == APPROXIMATE:
        dense.nprobe = manifest.dense.probes
    return Index(manifest, passages, rows, dense, sentence_vectors, lexical, ids, folder)


@contextlib.contextmanager
def write_lock(root: Path) -> Iterator[None]:
    """One writer at a time per index folder; readers never wait."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle = (root / ".lock").open("a")
    except PermissionError:
        raise IndexUnavailableError(f"the index folder {root}/ is not writable (permission denied)") from None
    except OSError as exc:
        raise IndexUnavailableError(f"the index folder {root}/ cannot be written ({exc.strerror})") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IndexUnavailableError(
                f"another protest-bot is writing the index in {root}/; try again soon"
            ) from None
        yield


def save(
    root: Path,
    manifest: Manifest,
    passages: list[Passage],
    sentence_rows: list[tuple[int, ...]],
    passage_vectors: np.ndarray,
    sentence_vectors: np.ndarray,
    lexical: LexicalIndex,
    exact_limit: int,
) -> None:
    """Write a complete new version beside the live one, then swap CURRENT to it (caller holds the lock)."""
    settings = dense_index.dense_settings(len(passages), exact_limit)
    ids = np.arange(len(passages), dtype=np.int64)
    manifest.dense, manifest.next_id = settings, len(passages)
    manifest.search = settings.kind
    manifest.passages, manifest.sentences = len(passages), len(sentence_vectors)

    def write(staging: Path) -> None:
        lines = [passage_line(p) for p in passages]
        write_lines(staging, [b"".join(lines)])
        write_offsets(staging, [np.array([len(x) for x in lines], dtype=np.int64)])
        write_sentence_rows(staging, [np.asarray(r, dtype=np.int32) for r in sentence_rows])
        np.save(staging / IDS, ids, allow_pickle=False)
        np.save(staging / PASSAGE_KEYS, text_keys([p.text for p in passages]), allow_pickle=False)
        np.save(staging / SENTENCES, sentence_vectors.astype(np.float16), allow_pickle=False)
        keys = sentence_table_keys(passages, sentence_rows, len(sentence_vectors))
        np.save(staging / SENTENCE_KEYS, keys, allow_pickle=False)
        dense_index.write_index(
            dense_index.new_dense_index(passage_vectors, exact_limit, ids, settings), staging / DENSE
        )
        lexical.save(staging / BM25)

    _write_version(root, manifest, write)


@dataclass(frozen=True)
class UpdatePlan:
    """A new version made of the live one's rows `keep` plus new passages, planned by the indexer.

    `keep` and `keep_sentences` are increasing rows of the live index; the new version's passage
    rows are `keep` then `passages`, and its sentence rows are `keep_sentences` then
    `sentence_vectors` (whose texts have `sentence_keys`). `sentence_rows` of the new passages
    already count in that numbering.
    """

    keep: np.ndarray
    passages: list[Passage]
    sentence_rows: list[tuple[int, ...]]
    passage_vectors: np.ndarray
    keep_sentences: np.ndarray
    sentence_vectors: np.ndarray
    sentence_keys: np.ndarray


def save_update(
    root: Path, previous: Index, manifest: Manifest, plan: UpdatePlan, lexical: LexicalIndex, exact_limit: int
) -> None:
    """Write the new version `plan` describes, beside the live one `previous` (caller holds the lock).

    Kept passage lines are copied as bytes and kept vectors stay in the FAISS index of `previous`,
    which is updated in place (`dense.updated`).
    """
    passages, passage_vectors, sentence_rows = plan.passages, plan.passage_vectors, plan.sentence_rows
    sentence_vectors, sentence_keys = plan.sentence_vectors, plan.sentence_keys
    keep = np.asarray(plan.keep, dtype=np.int64)
    keep_sentences = np.asarray(plan.keep_sentences, dtype=np.int64)
    old_ids = previous._row_ids()
    new_ids = np.arange(previous.manifest.next_id, previous.manifest.next_id + len(passages), dtype=np.int64)
    ids = np.concatenate([old_ids[keep], new_ids])
    total = len(ids)
    old = previous.manifest.dense
    dense, settings = dense_index.updated(
        previous.dense, old, old_ids, keep, new_ids, passage_vectors, previous.vectors_of, exact_limit
    )
    manifest.dense, manifest.search = settings, settings.kind
    manifest.passages, manifest.sentences = total, len(keep_sentences) + len(sentence_vectors)
    manifest.next_id = int(new_ids[-1]) + 1 if len(new_ids) else previous.manifest.next_id

    table, rows = previous.passages, previous.sentence_rows
    kept_runs = runs(keep)

    def write(staging: Path) -> None:
        write_kept_and_new_passages(staging, table, kept_runs, passages)
        write_sentence_rows(
            staging,
            renumbered_sentence_rows(
                rows, kept_runs, keep_sentences, len(previous.sentence_vectors), sentence_rows
            ),
        )
        np.save(staging / IDS, ids, allow_pickle=False)
        old_keys = previous.passage_keys()
        np.save(
            staging / PASSAGE_KEYS,
            np.concatenate([old_keys[keep], text_keys([p.text for p in passages])]),
            allow_pickle=False,
        )
        write_gathered(
            staging / SENTENCES, previous.sentence_vectors, keep_sentences, sentence_vectors, np.float16
        )
        write_gathered(
            staging / SENTENCE_KEYS, previous.sentence_keys(), keep_sentences, sentence_keys, np.uint8
        )
        dense_index.write_index(dense, staging / DENSE)
        lexical.save(staging / BM25)

    _write_version(root, manifest, write)


def _write_version(root: Path, manifest: Manifest, write: Callable[[Path], None]) -> None:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    name = f"v-{stamp}-{uuid.uuid4().hex[:8]}"
    staging = root / f".build-{name}"
    try:
        staging.mkdir(parents=True)
        write(staging)
        manifest.format_version = FORMAT_VERSION
        manifest.files = {n: (staging / n).stat().st_size for n in CHECKED_FILES}
        manifest.digests = {n: file_digest(staging / n) for n in CHECKED_FILES}
        manifest.built_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        (staging / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
        _fsync_tree(staging)
        staging.rename(root / name)
        _swap_current(root, name)
    except PermissionError:
        shutil.rmtree(staging, ignore_errors=True)
        raise IndexUnavailableError(f"the index folder {root}/ is not writable (permission denied)") from None
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise IndexUnavailableError(
            f"could not write the index in {root}/ ({exc.strerror}); the old one is kept"
        ) from None
    _remove_old_versions(root, keep=name)


def _swap_current(root: Path, name: str) -> None:
    pointer = root / f".{CURRENT}.{uuid.uuid4().hex[:8]}"
    with pointer.open("w", encoding="utf-8") as handle:
        handle.write(name + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(pointer, root / CURRENT)
    _fsync_dir(root)


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_old_versions(root: Path, keep: str) -> None:
    # Earlier versions and half-written builds of crashed runs; the lock says no build is running.
    for path in root.iterdir():
        is_build = path.name.startswith((".build-v-", "v-", f".{CURRENT}."))
        if is_build and path.name != keep:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
