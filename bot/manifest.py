"""The index's description of itself: the manifest, read before anything else is loaded, and how the
corpus on disk compares with it. No numpy, FAISS or BM25 here: `index status` and `sources` read
only this (a third of their run time went to importing numpy)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bot.corpus import article_files, content_hash
from bot.errors import IndexCorruptError, IndexMismatchError, IndexMissingError, IndexUnavailableError
from bot.models import Source

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

EXACT = "exact"
APPROXIMATE = "ivf"


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


def current_version(root: Path) -> Path:
    """The live version folder, or IndexMissingError when nothing has been built."""
    pointer = root / CURRENT
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise IndexMissingError(f"no index in {root}/") from None
    except PermissionError:
        raise IndexUnavailableError(f"the index folder {root}/ cannot be read (permission denied)") from None
    except (OSError, UnicodeDecodeError):
        raise IndexCorruptError(f"{root}/{CURRENT} is unreadable") from None
    folder = root / name
    if not name or "/" in name or name.startswith(".") or not folder.is_dir():
        raise IndexCorruptError(f"{root}/{CURRENT} names a missing version ({name!r})")
    return folder


def read_manifest(root: Path) -> Manifest:
    """The live index's manifest, checked for its format version."""
    folder = current_version(root)
    try:
        text = (folder / MANIFEST).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise IndexCorruptError("the index manifest is missing") from None
    except PermissionError:
        raise IndexUnavailableError(f"the index folder {root}/ cannot be read (permission denied)") from None
    except (OSError, UnicodeDecodeError):
        raise IndexCorruptError("the index manifest is corrupt") from None
    try:
        version = json.loads(text).get("format_version")
    except (ValueError, AttributeError):
        raise IndexCorruptError("the index manifest is corrupt") from None
    if version != FORMAT_VERSION:
        raise IndexMismatchError(
            f"the index has format version {version}, this protest-bot reads {FORMAT_VERSION}"
        )
    try:
        return Manifest.from_json(text)
    except (ValueError, TypeError, KeyError, AttributeError):
        raise IndexCorruptError("the index manifest is corrupt") from None


def verify(root: Path) -> Manifest:
    """The live index's manifest, with every file it lists checked as `load` checks them (sizes, then
    SHA-256), without reading them into numpy or FAISS: for `index status`, which imports neither."""
    manifest = read_manifest(root)
    check_files(current_version(root), manifest)
    return manifest


def check_files(folder: Path, manifest: Manifest) -> None:
    # A truncated, missing or altered file is caught here, before a library reads garbage from it:
    # sizes first (cheap, and the clearer message), then the digests.
    if not set(manifest.files) == set(manifest.digests) == set(CHECKED_FILES):
        raise IndexCorruptError("the index manifest does not list its files")
    for name, size in manifest.files.items():
        path = folder / name
        try:
            actual = path.stat().st_size
        except FileNotFoundError:
            raise IndexCorruptError(f"the index file {name} is missing") from None
        if actual != size:
            raise IndexCorruptError(f"the index file {name} is damaged ({actual} bytes, expected {size})")
    for name, digest in manifest.digests.items():
        if file_digest(folder / name) != digest:
            raise IndexCorruptError(f"the index file {name} is damaged (its contents changed)")


def file_digest(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except PermissionError:
        raise IndexUnavailableError(
            f"the index file {path.name} cannot be read (permission denied)"
        ) from None


@dataclass(frozen=True)
class Freshness:
    """How the corpus on disk compares with the index: what an update would do."""

    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]
    # The same articles at another path (the corpus folder moved, or an index built elsewhere): not
    # stale, the index answers the same, but the next update re-records them (embedding nothing).
    moved: tuple[str, ...] = ()

    @property
    def stale(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def freshness(corpus_dir: Path, manifest: Manifest) -> Freshness:
    """Compare the corpus files' hashes and paths with those recorded in the manifest (no parsing,
    no model)."""
    files = {path.stem: path for path in article_files(corpus_dir)}
    found = compare({i: content_hash(path.read_bytes()) for i, path in files.items()}, manifest.hashes())
    return Freshness(found.added, found.changed, found.removed, moved_articles(files, manifest))


def moved_articles(files: dict[str, Path], manifest: Manifest) -> tuple[str, ...]:
    """Ids of indexed articles that the corpus now holds at another path (`files`: id → path)."""
    records = manifest.articles
    return tuple(sorted(i for i, path in files.items() if i in records and records[i].path != str(path)))


def compare(on_disk: dict[str, str], indexed: dict[str, str]) -> Freshness:
    """Article ids added, changed and removed, from content hashes by id on disk and in an index."""
    return Freshness(
        added=tuple(sorted(set(on_disk) - set(indexed))),
        changed=tuple(sorted(i for i in on_disk.keys() & indexed.keys() if on_disk[i] != indexed[i])),
        removed=tuple(sorted(set(indexed) - set(on_disk))),
    )
