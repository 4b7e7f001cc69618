"""The index on disk: a manifest, FAISS vectors, passages, sentence vectors and BM25, written atomically.

Layout of the index folder:

    CURRENT              name of the live version folder (replaced atomically)
    v-<stamp>/           one complete index
        manifest.json    format version, model, dimension, chunking, articles and their hashes, file sizes
        passages.jsonl   one passage a line (text, offsets, sentence offsets and rows)
        dense.faiss      passage vectors (inner product over unit vectors = cosine similarity)
        sentences.npy    sentence vectors, float16, for choosing the quote inside a passage
        bm25/            bm25s arrays and vocabulary (no pickle)

A build writes a new version folder beside the live one and only then swaps CURRENT, so a crash at
any point leaves the previous index loadable. Only this module imports faiss.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bot.errors import IndexCorruptError, IndexError_, IndexMismatchError, IndexMissingError
from bot.lexical import LexicalIndex
from bot.models import Passage, Sentence

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CURRENT = "CURRENT"
MANIFEST = "manifest.json"
PASSAGES = "passages.jsonl"
DENSE = "dense.faiss"
SENTENCES = "sentences.npy"
BM25 = "bm25"
HNSW_NEIGHBOURS = 32


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


@dataclass
class Manifest:
    """The index's description of itself, read before anything else is loaded."""

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
    built_at: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        data["articles"] = {k: ArticleRecord(**v) for k, v in data["articles"].items()}
        return cls(**data)

    def hashes(self) -> dict[str, str]:
        """Article id → content hash of every file the index accounts for, skipped ones included."""
        return {**{a.id: a.hash for a in self.articles.values()}, **self.skipped}


@dataclass
class Index:
    """A loaded index: everything a search needs, in memory."""

    manifest: Manifest
    passages: list[Passage]
    sentence_rows: list[tuple[int, ...]]
    dense: object  # faiss.Index
    sentence_vectors: np.ndarray
    lexical: LexicalIndex

    def search_dense(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows and cosine similarities of the `k` passages nearest to a unit query vector."""
        k = min(k, len(self.passages))
        if k == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        scores, rows = self.dense.search(query.reshape(1, -1).astype(np.float32), k)  # type: ignore[attr-defined]
        keep = rows[0] >= 0
        return rows[0][keep], scores[0][keep]

    def dense_scores(self, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Cosine similarity of the query with the passages at `rows` (exact, whatever the index type)."""
        if len(rows) == 0:
            return np.zeros(0, dtype=np.float32)
        vectors = np.vstack([self.dense.reconstruct(int(r)) for r in rows])  # type: ignore[attr-defined]
        return vectors @ query.astype(np.float32)

    def passage_vectors(self) -> np.ndarray:
        """All passage vectors, in row order (for reuse when the index is updated)."""
        n = len(self.passages)
        if n == 0:
            return np.zeros((0, self.manifest.dimension), dtype=np.float32)
        return self.dense.reconstruct_n(0, n)  # type: ignore[attr-defined]


def new_dense_index(vectors: np.ndarray, exact_limit: int):  # type: ignore[no-untyped-def]
    """A FAISS index over unit vectors: exact inner product, or HNSW above `exact_limit` vectors.

    Inner product of unit vectors is cosine similarity, so scores are comparable across questions
    and can be thresholded.
    """
    import faiss

    dimension = vectors.shape[1]
    if len(vectors) > exact_limit:
        index = faiss.IndexHNSWFlat(dimension, HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = 128
    else:
        index = faiss.IndexFlatIP(dimension)
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


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
        manifest = Manifest.from_json((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IndexCorruptError("the index manifest is missing: run `protest-bot index build`") from None
    except PermissionError:
        raise IndexError_(f"the index folder {root}/ cannot be read (permission denied)") from None
    except (ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise IndexCorruptError("the index manifest is corrupt: run `protest-bot index build`") from None
    if manifest.format_version != FORMAT_VERSION:
        raise IndexMismatchError(
            f"the index has format version {manifest.format_version}, this protest-bot reads "
            f"{FORMAT_VERSION}: run `protest-bot index build`"
        )
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
    _check_sizes(folder, manifest)
    try:
        passages, sentence_rows = _read_passages(folder / PASSAGES)
        dense = _read_faiss(folder / DENSE)
        sentence_vectors = np.load(folder / SENTENCES, allow_pickle=False)
        lexical = LexicalIndex.load(folder / BM25)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, json.JSONDecodeError) as exc:
        log.debug("index load failed", exc_info=exc)
        raise IndexCorruptError(f"the index in {root}/ is corrupt: run `protest-bot index build`") from None
    counts_agree = (
        len(passages) == manifest.passages == dense.ntotal
        and dense.d == manifest.dimension
        and sentence_vectors.shape == (manifest.sentences, manifest.dimension)
    )
    if not counts_agree:
        raise IndexCorruptError(
            f"the index files in {root}/ disagree with its manifest: run `protest-bot index build`"
        )
    return Index(manifest, passages, sentence_rows, dense, sentence_vectors, lexical)


def _check_sizes(folder: Path, manifest: Manifest) -> None:
    # A truncated or missing file is caught here, before a library reads garbage from it.
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


def _read_faiss(path: Path):  # type: ignore[no-untyped-def]
    import faiss

    return faiss.read_index(str(path))


def _read_passages(path: Path) -> tuple[list[Passage], list[tuple[int, ...]]]:
    passages, rows = [], []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            passages.append(
                Passage(
                    id=record["id"],
                    article_id=record["article_id"],
                    start=record["start"],
                    end=record["end"],
                    text=record["text"],
                    sentences=tuple(Sentence(s, e) for s, e in record["sentences"]),
                )
            )
            rows.append(tuple(record["sentence_rows"]))
    return passages, rows


def _passage_line(passage: Passage, rows: tuple[int, ...]) -> str:
    record = {
        "id": passage.id,
        "article_id": passage.article_id,
        "start": passage.start,
        "end": passage.end,
        "text": passage.text,
        "sentences": [[s.start, s.end] for s in passage.sentences],
        "sentence_rows": list(rows),
    }
    return json.dumps(record, ensure_ascii=False) + "\n"


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
    import faiss

    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    name = f"v-{stamp}-{uuid.uuid4().hex[:8]}"
    staging = root / f".build-{name}"
    try:
        staging.mkdir(parents=True)
        with (staging / PASSAGES).open("w", encoding="utf-8") as handle:
            handle.writelines(_passage_line(p, r) for p, r in zip(passages, sentence_rows, strict=True))
        faiss.write_index(new_dense_index(passage_vectors, exact_limit), str(staging / DENSE))
        np.save(staging / SENTENCES, sentence_vectors.astype(np.float16), allow_pickle=False)
        lexical.save(staging / BM25)
        manifest.files = {n: (staging / n).stat().st_size for n in (PASSAGES, DENSE, SENTENCES)}
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
