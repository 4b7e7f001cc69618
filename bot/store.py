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
Only this module imports faiss.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import operator
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from bot.errors import IndexCorruptError, IndexError_, IndexMismatchError, IndexMissingError
from bot.models import Passage, Sentence, Source

if TYPE_CHECKING:
    import numpy as np

    from bot.lexical import LexicalIndex

log = logging.getLogger(__name__)


class LazyNumpy:
    """numpy, imported on first use, then put in place of this object in the module's namespace.

    `index status` and `sources` read only the manifest; importing numpy (and BM25 with it) would
    be a third of their run time.
    """

    def __init__(self, namespace: dict[str, Any]) -> None:
        self._namespace = namespace

    def __getattr__(self, name: str) -> Any:
        import numpy

        self._namespace["np"] = numpy
        return getattr(numpy, name)


if not TYPE_CHECKING:
    np = LazyNumpy(globals())

FORMAT_VERSION = 3  # 3: the manifest records each file's SHA-256
CURRENT = "CURRENT"
MANIFEST = "manifest.json"
PASSAGES = "passages.jsonl"
PASSAGE_OFFSETS = "passage_offsets.npy"
IDS = "ids.npy"
PASSAGE_KEYS = "passage_keys.npy"
SENTENCE_ROWS = "sentence_rows.npy"
SENTENCE_ROW_OFFSETS = "sentence_row_offsets.npy"
SENTENCES = "sentences.npy"
SENTENCE_KEYS = "sentence_keys.npy"
DENSE = "dense.faiss"
BM25 = "bm25"
CHECKED_FILES = (
    PASSAGES,
    PASSAGE_OFFSETS,
    IDS,
    PASSAGE_KEYS,
    SENTENCE_ROWS,
    SENTENCE_ROW_OFFSETS,
    SENTENCES,
    SENTENCE_KEYS,
    DENSE,
)
KEY_BYTES = 16

EXACT = "exact"
APPROXIMATE = "ivf"
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


def text_key(text: str) -> bytes:
    """The key a text's vector is stored and reused under."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=KEY_BYTES).digest()


def text_keys(texts: Sequence[str]) -> np.ndarray:
    """Keys of many texts, as an (n, 16) uint8 array."""
    keys = np.zeros((len(texts), KEY_BYTES), dtype=np.uint8)
    for i, text in enumerate(texts):
        keys[i] = np.frombuffer(text_key(text), dtype=np.uint8)
    return keys


@dataclass(frozen=True)
class ArticleRecord:
    """What the index remembers of an article: its citation metadata and content hash."""

    id: str
    path: str
    title: str
    outlet: str | None
    author: str | None
    date: str | None
    url: str | None
    hash: str
    passages: int
    label: str = ""  # for display only; empty in indexes built before labels

    def source(self) -> Source:
        """The article as a citation source."""
        return Source(
            id=self.id,
            title=self.title,
            outlet=self.outlet,
            date=self.date,
            url=self.url,
            path=self.path,
            label=self.label,
        )


@dataclass
class DenseSettings:
    """Which FAISS index holds the passage vectors, and its parameters."""

    kind: str = EXACT
    lists: int = 0  # IVF lists (0 for exact search)
    probes: int = 0  # IVF lists searched per question
    trained_on: int = 0  # vectors the IVF lists were trained for


@dataclass
class Manifest:
    """The index's description of itself, read before anything else is loaded.

    `articles` is in row order: the passages of each article are one block of rows, in this order.
    """

    format_version: int
    model: str
    dimension: int
    chunk_tokens: int
    chunk_overlap: int
    search: str
    passages: int
    sentences: int
    articles: dict[str, ArticleRecord]
    # Files that could not be read as articles, by content hash, so they don't make the index stale.
    skipped: dict[str, str] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)  # file name → SHA-256, checked at load
    built_at: str = ""
    dense: DenseSettings = field(default_factory=DenseSettings)
    next_id: int = 0  # the FAISS id the next new passage gets

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        data["articles"] = {k: ArticleRecord(**v) for k, v in data["articles"].items()}
        data["dense"] = DenseSettings(**data.get("dense", {}))
        return cls(**data)

    def hashes(self) -> dict[str, str]:
        """Article id → content hash of every file the index accounts for, skipped ones included."""
        return {**{a.id: a.hash for a in self.articles.values()}, **self.skipped}

    def article_rows(self) -> dict[str, range]:
        """Article id → its block of passage rows."""
        rows, start = {}, 0
        for article_id, record in self.articles.items():
            rows[article_id] = range(start, start + record.passages)
            start += record.passages
        return rows


class PassageTable(Sequence[Passage]):
    """The passages of an index, parsed from their line of passages.jsonl when asked for.

    A line is read with pread when asked for: a 100k-passage index costs no Python object per
    passage, and the file's pages stay in the page cache rather than in the process (a memory map
    showed up in the serving process's RSS, most of the file after a few questions).
    """

    def __init__(self, path: Path, offsets: np.ndarray) -> None:
        self.path = path
        self.offsets = offsets
        self._file = path.open("rb")  # pread: no shared position, so threads can read at once

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @overload
    def __getitem__(self, row: int) -> Passage: ...
    @overload
    def __getitem__(self, row: slice) -> list[Passage]: ...
    def __getitem__(self, row: int | slice) -> Passage | list[Passage]:
        if isinstance(row, slice):
            return [self[i] for i in range(*row.indices(len(self)))]
        row = operator.index(row)
        if row < 0:
            row += len(self)
        if not 0 <= row < len(self):
            raise IndexError(f"passage row {row} out of range")
        return _passage_from(json.loads(self.line(row)))

    def __iter__(self) -> Iterator[Passage]:
        for row in range(len(self)):
            yield self[row]

    def line(self, row: int) -> bytes:
        """The raw JSON line of a row, newline included."""
        return self.span(row, row + 1)

    def span(self, start: int, stop: int) -> bytes:
        """The raw lines of rows start … stop-1."""
        begin, end = int(self.offsets[start]), int(self.offsets[stop])
        data = os.pread(self._file.fileno(), end - begin, begin)
        if len(data) != end - begin:
            raise IndexCorruptError(
                "the passage file is shorter than its offsets: run `protest-bot index build`"
            )
        return data

    def text(self, row: int) -> str:
        return json.loads(self.line(row))["text"]


class VectorFile:
    """The rows of a 2-D .npy file, read with pread when asked for (see PassageTable for why).

    Indexing with an int, a slice or a list/array of rows gives a NumPy array, as a loaded array would.
    """

    def __init__(self, path: Path) -> None:
        self._file = path.open("rb")
        version = np.lib.format.read_magic(self._file)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(self._file)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(self._file)
        if len(shape) != 2 or fortran or dtype.hasobject:
            raise ValueError(f"{path.name} is not a 2-D C-ordered numeric array")
        self.shape: tuple[int, int] = shape
        self.dtype = dtype
        self.ndim = 2
        self._offset = self._file.tell()
        self._row_bytes = shape[1] * dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step == 1:
                return self._run(start, max(start, stop))
            key = range(start, stop, step)
        if np.ndim(key) == 0:
            row = operator.index(key)
            row += len(self) if row < 0 else 0
            if not 0 <= row < len(self):
                raise IndexError(f"vector row {row} out of range")
            return self._run(row, row + 1)[0]
        rows = np.asarray(key, dtype=np.int64).reshape(-1)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError("vector row out of range")
        # One read per run of consecutive rows: a passage's sentences are mostly neighbours.
        wanted = np.unique(rows)
        out = np.empty((len(wanted), self.shape[1]), dtype=self.dtype)
        breaks = np.flatnonzero(np.diff(wanted) != 1) + 1
        at = 0
        for run in np.split(wanted, breaks) if len(wanted) else []:
            out[at : at + len(run)] = self._run(int(run[0]), int(run[-1]) + 1)
            at += len(run)
        return out[np.searchsorted(wanted, rows)]

    def _run(self, start: int, stop: int) -> np.ndarray:
        size = (stop - start) * self._row_bytes
        data = os.pread(self._file.fileno(), size, self._offset + start * self._row_bytes)
        if len(data) != size:
            raise IndexCorruptError(
                "a vector file is shorter than its header says: run `protest-bot index build`"
            )
        return np.frombuffer(data, dtype=self.dtype).reshape(stop - start, self.shape[1])


class RowTable(Sequence[tuple[int, ...]]):
    """For each passage, the rows of its sentences in the sentence table (a flat array + offsets)."""

    def __init__(self, flat: np.ndarray, offsets: np.ndarray) -> None:
        self.flat = flat
        self.offsets = offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @overload
    def __getitem__(self, row: int) -> tuple[int, ...]: ...
    @overload
    def __getitem__(self, row: slice) -> list[tuple[int, ...]]: ...
    def __getitem__(self, row: int | slice) -> tuple[int, ...] | list[tuple[int, ...]]:
        if isinstance(row, slice):
            return [self[i] for i in range(*row.indices(len(self)))]
        row = operator.index(row)
        if row < 0:
            row += len(self)
        if not 0 <= row < len(self):
            raise IndexError(f"passage row {row} out of range")
        return tuple(self.flat[self.offsets[row] : self.offsets[row + 1]].tolist())

    def block(self, start: int, stop: int) -> np.ndarray:
        """The flat sentence rows of passages start … stop-1."""
        return self.flat[self.offsets[start] : self.offsets[stop]]


@dataclass
class Index:
    """A loaded index: everything a search needs, in memory or read from its files on use."""

    manifest: Manifest
    passages: Sequence[Passage]
    sentence_rows: Sequence[tuple[int, ...]]
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
        with _one_thread():
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
            raise IndexError_("this index was not loaded from disk")
        keys = np.load(self.folder / name, mmap_mode="r", allow_pickle=False)
        if keys.shape != (count, KEY_BYTES):
            raise IndexCorruptError(
                f"the index file {name} disagrees with the index: run `protest-bot index build`"
            )
        return keys


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
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


def _training_sample(vectors: np.ndarray, size: int) -> np.ndarray:
    if len(vectors) <= size:
        return vectors
    rows = np.random.default_rng(0).choice(len(vectors), size=size, replace=False)
    return vectors[np.sort(rows)]


def current_version(root: Path) -> Path:
    """The live version folder, or IndexMissingError when nothing has been built."""
    pointer = root / CURRENT
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise IndexMissingError(f"no index in {root}/: run `protest-bot index build`") from None
    except PermissionError:
        raise IndexError_(f"the index folder {root}/ cannot be read (permission denied)") from None
    except (OSError, UnicodeDecodeError):
        raise IndexCorruptError(f"{root}/{CURRENT} is unreadable: run `protest-bot index build`") from None
    folder = root / name
    if not name or "/" in name or name.startswith(".") or not folder.is_dir():
        raise IndexCorruptError(
            f"{root}/{CURRENT} names a missing version ({name!r}): run `protest-bot index build`"
        )
    return folder


def read_manifest(root: Path) -> Manifest:
    """The live index's manifest, checked for its format version."""
    folder = current_version(root)
    try:
        text = (folder / MANIFEST).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise IndexCorruptError("the index manifest is missing: run `protest-bot index build`") from None
    except PermissionError:
        raise IndexError_(f"the index folder {root}/ cannot be read (permission denied)") from None
    except (OSError, UnicodeDecodeError):
        raise IndexCorruptError("the index manifest is corrupt: run `protest-bot index build`") from None
    try:
        version = json.loads(text).get("format_version")
    except (ValueError, AttributeError):
        raise IndexCorruptError("the index manifest is corrupt: run `protest-bot index build`") from None
    if version != FORMAT_VERSION:
        raise IndexMismatchError(
            f"the index has format version {version}, this protest-bot reads "
            f"{FORMAT_VERSION}: run `protest-bot index build`"
        )
    try:
        return Manifest.from_json(text)
    except (ValueError, TypeError, KeyError, AttributeError):
        raise IndexCorruptError("the index manifest is corrupt: run `protest-bot index build`") from None


def verify(root: Path) -> Manifest:
    """The live index's manifest, with every file it lists checked as `load` checks them (sizes, then
    SHA-256), without reading them into numpy or FAISS: for `index status`, which imports neither."""
    manifest = read_manifest(root)
    _check_files(current_version(root), manifest)
    return manifest


def load(root: Path, model: str) -> Index:
    """Load the live index, checking the manifest against the model and every file against it."""
    manifest = read_manifest(root)
    if manifest.model != model:
        raise IndexMismatchError(
            f"the index was built with model {manifest.model!r}, not {model!r}: run "
            f"`protest-bot index build --model {model}` or pass --model {manifest.model}"
        )
    folder = current_version(root)
    _check_files(folder, manifest)
    try:
        offsets = np.load(folder / PASSAGE_OFFSETS, allow_pickle=False)
        passages = PassageTable(folder / PASSAGES, offsets)
        rows = RowTable(
            np.load(folder / SENTENCE_ROWS, allow_pickle=False),
            np.load(folder / SENTENCE_ROW_OFFSETS, allow_pickle=False),
        )
        ids = np.load(folder / IDS, allow_pickle=False)
        dense = _read_faiss(folder / DENSE)
        sentence_vectors = VectorFile(folder / SENTENCES)
        from bot.lexical import LexicalIndex

        lexical = LexicalIndex.load(folder / BM25)
        if len(passages):  # the first and last lines parse: the offsets fit the file
            _ = passages[0], passages[len(passages) - 1]
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, IndexError) as exc:
        log.debug("index load failed", exc_info=exc)
        raise IndexCorruptError(f"the index in {root}/ is corrupt: run `protest-bot index build`") from None
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
        raise IndexCorruptError(
            f"the index files in {root}/ disagree with its manifest: run `protest-bot index build`"
        )
    if manifest.dense.kind == APPROXIMATE:
        dense.nprobe = manifest.dense.probes
    return Index(manifest, passages, rows, dense, sentence_vectors, lexical, ids, folder)


def _check_files(folder: Path, manifest: Manifest) -> None:
    # A truncated, missing or altered file is caught here, before a library reads garbage from it:
    # sizes first (cheap, and the clearer message), then the digests.
    if not set(manifest.files) == set(manifest.digests) == set(CHECKED_FILES):
        raise IndexCorruptError("the index manifest does not list its files: run `protest-bot index build`")
    for name, size in manifest.files.items():
        path = folder / name
        try:
            actual = path.stat().st_size
        except FileNotFoundError:
            raise IndexCorruptError(
                f"the index file {name} is missing: run `protest-bot index build`"
            ) from None
        if actual != size:
            raise IndexCorruptError(
                f"the index file {name} is damaged ({actual} bytes, expected {size}): "
                "run `protest-bot index build`"
            )
    for name, digest in manifest.digests.items():
        if _digest(folder / name) != digest:
            raise IndexCorruptError(
                f"the index file {name} is damaged (its contents changed): run `protest-bot index build`"
            )


def _digest(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except PermissionError:
        raise IndexError_(f"the index file {path.name} cannot be read (permission denied)") from None


def _read_faiss(path: Path):  # type: ignore[no-untyped-def]
    import faiss

    return faiss.read_index(str(path))


def _passage_from(record: dict[str, Any]) -> Passage:
    return Passage(
        id=record["id"],
        article_id=record["article_id"],
        start=record["start"],
        end=record["end"],
        text=record["text"],
        sentences=tuple(Sentence(s, e) for s, e in record["sentences"]),
    )


def _passage_line(passage: Passage) -> bytes:
    record = {
        "id": passage.id,
        "article_id": passage.article_id,
        "start": passage.start,
        "end": passage.end,
        "text": passage.text,
        "sentences": [[s.start, s.end] for s in passage.sentences],
    }
    return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")


@contextlib.contextmanager
def write_lock(root: Path) -> Iterator[None]:
    """One writer at a time per index folder; readers never wait."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle = (root / ".lock").open("a")
    except PermissionError:
        raise IndexError_(f"the index folder {root}/ is not writable (permission denied)") from None
    except OSError as exc:
        raise IndexError_(f"the index folder {root}/ cannot be written ({exc.strerror})") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IndexError_(
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
    settings = dense_settings(len(passages), exact_limit)
    ids = np.arange(len(passages), dtype=np.int64)
    manifest.dense, manifest.next_id = settings, len(passages)
    manifest.search = settings.kind
    manifest.passages, manifest.sentences = len(passages), len(sentence_vectors)

    def write(staging: Path) -> None:
        lines = [_passage_line(p) for p in passages]
        _write_lines(staging, [b"".join(lines)])
        _write_offsets(staging, [np.array([len(x) for x in lines], dtype=np.int64)])
        _write_sentence_rows(staging, [np.asarray(r, dtype=np.int32) for r in sentence_rows])
        np.save(staging / IDS, ids, allow_pickle=False)
        np.save(staging / PASSAGE_KEYS, text_keys([p.text for p in passages]), allow_pickle=False)
        np.save(staging / SENTENCES, sentence_vectors.astype(np.float16), allow_pickle=False)
        keys = _sentence_table_keys(passages, sentence_rows, len(sentence_vectors))
        np.save(staging / SENTENCE_KEYS, keys, allow_pickle=False)
        _write_faiss(new_dense_index(passage_vectors, exact_limit, ids, settings), staging / DENSE)
        lexical.save(staging / BM25)

    _write_version(root, manifest, write)


def save_update(
    root: Path,
    previous: Index,
    manifest: Manifest,
    keep: np.ndarray,
    passages: list[Passage],
    sentence_rows: list[tuple[int, ...]],
    passage_vectors: np.ndarray,
    keep_sentences: np.ndarray,
    sentence_vectors: np.ndarray,
    sentence_keys: np.ndarray,
    lexical: LexicalIndex,
    exact_limit: int,
) -> None:
    """Write a new version made of the live one's rows `keep` plus new passages (caller holds the lock).

    `keep` and `keep_sentences` are increasing rows of `previous`; the new version's passage rows
    are `keep` then `passages`, and its sentence rows are `keep_sentences` then `sentence_vectors`
    (whose texts have `sentence_keys`). `sentence_rows` of the new passages already count in that
    numbering. The FAISS index of `previous` is updated in place: the ids of dropped rows are
    removed and the new passages added under fresh ids; it is rebuilt from its stored vectors only
    when the exact/approximate choice changes or the IVF lists were trained for far fewer vectors.
    """
    keep = np.asarray(keep, dtype=np.int64)
    keep_sentences = np.asarray(keep_sentences, dtype=np.int64)
    old_ids = previous._row_ids()
    new_ids = np.arange(previous.manifest.next_id, previous.manifest.next_id + len(passages), dtype=np.int64)
    ids = np.concatenate([old_ids[keep], new_ids])
    total = len(ids)
    settings = dense_settings(total, exact_limit)
    old = previous.manifest.dense
    rebuild = settings.kind != old.kind or (
        old.kind == APPROXIMATE and total > IVF_RETRAIN_GROWTH * max(old.trained_on, 1)
    )
    if rebuild:
        log.info("re-indexing %d stored vectors (%s → %s)", total, old.kind, settings.kind)
        vectors = np.vstack([previous.vectors_of(keep), passage_vectors]) if total else passage_vectors
        dense = new_dense_index(vectors, exact_limit, ids, settings)
    else:
        settings = old
        dense = previous.dense
        dropped = np.setdiff1d(old_ids, old_ids[keep], assume_unique=True)
        if len(dropped):
            dense.remove_ids(dropped)
        if len(passages):
            dense.add_with_ids(np.ascontiguousarray(passage_vectors, dtype=np.float32), new_ids)
    manifest.dense, manifest.search = settings, settings.kind
    manifest.passages, manifest.sentences = total, len(keep_sentences) + len(sentence_vectors)
    manifest.next_id = int(new_ids[-1]) + 1 if len(new_ids) else previous.manifest.next_id

    table, rows = previous.passages, previous.sentence_rows
    assert isinstance(table, PassageTable) and isinstance(rows, RowTable)
    runs = _runs(keep)

    def write(staging: Path) -> None:
        new_lines = [_passage_line(p) for p in passages]
        kept_lines = [table.span(a, b) for a, b in runs]
        _write_lines(staging, [*kept_lines, b"".join(new_lines)])
        kept_lengths = [np.diff(table.offsets[a : b + 1]) for a, b in runs]
        _write_offsets(staging, [*kept_lengths, np.array([len(x) for x in new_lines], dtype=np.int64)])
        # Sentence rows of kept passages, renumbered into the new sentence table.
        remap = np.full(len(previous.sentence_vectors), -1, dtype=np.int64)
        remap[keep_sentences] = np.arange(len(keep_sentences))
        kept_rows = [
            np.split(remap[rows.block(a, b)], np.diff(rows.offsets[a : b + 1]).cumsum()[:-1]) for a, b in runs
        ]
        per_passage = [r for block in kept_rows for r in block] + [
            np.asarray(r, dtype=np.int64) for r in sentence_rows
        ]
        if any(len(r) and int(r.min()) < 0 for r in per_passage):
            raise IndexCorruptError(
                "an update lost a sentence vector it needs: run `protest-bot index build`"
            )
        _write_sentence_rows(staging, per_passage)
        np.save(staging / IDS, ids, allow_pickle=False)
        old_keys = previous.passage_keys()
        np.save(
            staging / PASSAGE_KEYS,
            np.concatenate([old_keys[keep], text_keys([p.text for p in passages])]),
            allow_pickle=False,
        )
        _write_gathered(
            staging / SENTENCES, previous.sentence_vectors, keep_sentences, sentence_vectors, np.float16
        )
        _write_gathered(
            staging / SENTENCE_KEYS, previous.sentence_keys(), keep_sentences, sentence_keys, np.uint8
        )
        _write_faiss(dense, staging / DENSE)
        lexical.save(staging / BM25)

    _write_version(root, manifest, write)


def _runs(rows: np.ndarray) -> list[tuple[int, int]]:
    """Increasing rows as [start, stop) runs of consecutive numbers."""
    if len(rows) == 0:
        return []
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [len(rows)]])
    return [(int(rows[a]), int(rows[b - 1]) + 1) for a, b in zip(starts, stops, strict=True)]


def _write_lines(staging: Path, blocks: list[bytes]) -> None:
    with (staging / PASSAGES).open("wb") as handle:
        for block in blocks:
            handle.write(block)


def _write_offsets(staging: Path, lengths: list[np.ndarray]) -> None:
    """Byte offsets of the lines (n + 1), from their lengths."""
    sizes = np.concatenate([np.zeros(1, dtype=np.int64), *[np.asarray(x, dtype=np.int64) for x in lengths]])
    np.save(staging / PASSAGE_OFFSETS, np.cumsum(sizes), allow_pickle=False)


def _write_sentence_rows(staging: Path, per_passage: list[np.ndarray]) -> None:
    lengths = np.array([len(r) for r in per_passage], dtype=np.int64)
    flat = np.concatenate(per_passage).astype(np.int32) if per_passage else np.zeros(0, dtype=np.int32)
    np.save(staging / SENTENCE_ROWS, flat, allow_pickle=False)
    np.save(staging / SENTENCE_ROW_OFFSETS, np.concatenate([[0], np.cumsum(lengths)]), allow_pickle=False)


def _write_gathered(path: Path, old: np.ndarray, rows: np.ndarray, new: np.ndarray, dtype: type) -> None:
    """old[rows] then new, written in slices (old may be a VectorFile; no copy of it is held whole)."""
    width = old.shape[1] if old.ndim == 2 else new.shape[1]
    out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(len(rows) + len(new), width))
    step = 65536
    for start in range(0, len(rows), step):
        stop = min(start + step, len(rows))
        out[start:stop] = old[rows[start:stop]]
    out[len(rows) :] = new.astype(dtype)
    out.flush()
    del out


def _sentence_table_keys(passages: list[Passage], rows: list[tuple[int, ...]], count: int) -> np.ndarray:
    """The key of each sentence row, from the passages that hold it."""
    keys = np.zeros((count, KEY_BYTES), dtype=np.uint8)
    done = np.zeros(count, dtype=bool)
    for passage, passage_rows in zip(passages, rows, strict=True):
        for text, row in zip(passage.sentence_texts(), passage_rows, strict=True):
            if not done[row]:
                keys[row] = np.frombuffer(text_key(text), dtype=np.uint8)
                done[row] = True
    return keys


def _write_faiss(index: Any, path: Path) -> None:
    import faiss

    faiss.write_index(index, str(path))


def _write_version(root: Path, manifest: Manifest, write: Callable[[Path], None]) -> None:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    name = f"v-{stamp}-{uuid.uuid4().hex[:8]}"
    staging = root / f".build-{name}"
    try:
        staging.mkdir(parents=True)
        write(staging)
        manifest.format_version = FORMAT_VERSION
        manifest.files = {n: (staging / n).stat().st_size for n in CHECKED_FILES}
        manifest.digests = {n: _digest(staging / n) for n in CHECKED_FILES}
        manifest.built_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        (staging / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
        _fsync_tree(staging)
        staging.rename(root / name)
        _swap_current(root, name)
    except PermissionError:
        shutil.rmtree(staging, ignore_errors=True)
        raise IndexError_(f"the index folder {root}/ is not writable (permission denied)") from None
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise IndexError_(
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
