"""Building and updating the index from the corpus, embedding only text it has not seen.

Every vector is keyed by the text it was computed from: an update reuses the stored vector of any
passage or sentence whose text is unchanged, so only new or edited text reaches the model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bot import store
from bot.corpus import article_files, content_hash, read_articles, read_corpus
from bot.dense import dense_settings
from bot.errors import (
    BadInputError,
    IndexUnavailableError,
)
from bot.manifest import EXACT, FORMAT_VERSION, ArticleRecord, Freshness, Manifest, compare, moved_articles
from bot.models import Article, Passage
from bot.reuse import plan_reuse

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.embed import Embedder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UpdateReport:
    """What a build or update did."""

    articles: int
    passages: int
    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]
    skipped: tuple[str, ...]
    embedded: int
    reused: int
    moved: tuple[str, ...] = ()  # found at another path: re-recorded, not re-embedded


def describe_changes(changes: Freshness | UpdateReport) -> str:
    """What an update brings or brought, in a few words ("2 new, 1 removed"); "" when nothing."""
    counts = (
        ("new", changes.added),
        ("changed", changes.changed),
        ("removed", changes.removed),
        ("moved", changes.moved),
    )
    return ", ".join(f"{len(ids)} {what}" for what, ids in counts if ids)


def update_index(
    corpus_dir: Path,
    index_dir: Path,
    embedder: Embedder,
    chunk_tokens: int,
    chunk_overlap: int,
    exact_limit: int,
    full: bool = False,
    progress: bool = False,
) -> UpdateReport:
    """Bring the index in line with the corpus; with `full`, rebuild it without reusing anything.

    An update reads, chunks and embeds only new and changed articles; the passages, vectors and
    FAISS entries of unchanged ones are carried over from the live index as they are.
    """
    if chunk_tokens > embedder.max_tokens:
        raise BadInputError(
            f"--chunk-tokens {chunk_tokens} is more than the model reads ({embedder.max_tokens} word pieces)"
        )
    settings = _Chunking(chunk_tokens, chunk_overlap, exact_limit)
    # Listed before the lock, which creates the index folder: a missing corpus leaves nothing behind.
    files = {path.stem: path for path in article_files(corpus_dir)}
    with store.write_lock(index_dir):
        hashes = {i: content_hash(path.read_bytes()) for i, path in files.items()}
        previous = None if full else _reusable(index_dir, embedder)
        if previous is None:
            return _build(corpus_dir, index_dir, embedder, hashes, settings, progress)
        return _update(previous, index_dir, embedder, files, hashes, settings, progress)


def update_from_settings(
    settings: Settings, embedder: Embedder, full: bool = False, progress: bool = False
) -> UpdateReport:
    """`update_index` for the corpus, index and chunking the settings name."""
    return update_index(
        settings.corpus,
        settings.index,
        embedder,
        settings.chunk_tokens,
        settings.chunk_overlap,
        settings.exact_search_limit,
        full=full,
        progress=progress,
    )


@dataclass(frozen=True)
class _Chunking:
    tokens: int
    overlap: int
    exact_limit: int


def _build(
    corpus_dir: Path,
    index_dir: Path,
    embedder: Embedder,
    hashes: dict[str, str],
    settings: _Chunking,
    progress: bool,
) -> UpdateReport:
    """A new index from every article, every text embedded in one call."""
    from bot.lexical import LexicalIndex

    articles = read_corpus(corpus_dir)
    parsed = {a.id for a in articles}
    skipped = {i: h for i, h in hashes.items() if i not in parsed}
    passages, per_article = _chunk_all(articles, settings, embedder)
    sentence_texts, sentence_rows = _sentence_table(passages)
    passage_texts = [p.text for p in passages]
    todo = sorted(set(passage_texts) | set(sentence_texts))
    log.info("embedding %d texts", len(todo))
    vectors = _encode(embedder, todo, progress)
    row_of = {text: row for row, text in enumerate(todo)}
    manifest = _manifest(embedder, settings, articles, per_article, skipped)
    store.save(
        index_dir,
        manifest,
        passages,
        sentence_rows,
        _gather(vectors, [row_of[t] for t in passage_texts], embedder.dimension, np.float32),
        _gather(vectors, [row_of[t] for t in sentence_texts], embedder.dimension, np.float16),
        LexicalIndex.build(passage_texts),
        settings.exact_limit,
    )
    return UpdateReport(
        articles=len(articles),
        passages=len(passages),
        added=tuple(sorted(parsed)),
        changed=(),
        removed=(),
        skipped=tuple(sorted(skipped)),
        embedded=len(todo),
        reused=0,
    )


def _update(
    previous: store.Index,
    index_dir: Path,
    embedder: Embedder,
    files: dict[str, Path],
    hashes: dict[str, str],
    settings: _Chunking,
    progress: bool,
) -> UpdateReport:
    """A new version from the live one: unchanged articles carried over, the rest read and embedded."""
    from bot.lexical import LexicalIndex

    old = previous.manifest
    same_chunking = (old.chunk_tokens, old.chunk_overlap) == (settings.tokens, settings.overlap)
    kept_ids = [i for i, r in old.articles.items() if same_chunking and hashes.get(i) == r.hash]
    still_skipped = {i: h for i, h in old.skipped.items() if hashes.get(i) == h}
    to_read = sorted(set(hashes) - set(kept_ids) - set(still_skipped))
    articles = read_articles(files[i] for i in to_read)
    parsed = {a.id for a in articles}
    skipped = {**still_skipped, **{i: hashes[i] for i in to_read if i not in parsed}}
    compared = compare(hashes, old.hashes())
    kept = set(kept_ids)
    # A file that cannot be read is reported as skipped (with its warning), not as new or changed.
    changes = {
        "added": tuple(i for i in compared.added if i not in skipped),
        "changed": tuple(i for i in compared.changed if i in parsed),
        "removed": compared.removed,
        "skipped": tuple(sorted(skipped)),
        "moved": tuple(i for i in moved_articles(files, old) if i in kept),
    }

    block = old.article_rows()
    keep = np.array([row for i in kept_ids for row in block[i]], dtype=np.int64)
    passages, per_article = _chunk_all(articles, settings, embedder)
    total = len(keep) + len(passages)
    unchanged = not articles and len(keep) == old.passages and skipped == old.skipped and same_chunking
    unchanged = unchanged and not changes["moved"]  # moved articles are re-recorded, not re-embedded
    if unchanged and dense_settings(total, settings.exact_limit).kind == old.dense.kind:
        log.info("the index is up to date")
        return UpdateReport(articles=len(kept_ids), passages=old.passages, embedded=0, reused=0, **changes)

    reuse = plan_reuse(previous, keep, passages)
    log.info("embedding %d new texts", len(reuse.todo))
    embedded = dict(zip(reuse.todo, _encode(embedder, reuse.todo, progress), strict=True))
    plan = reuse.update_plan(keep, passages, embedded, embedder.dimension)

    texts = [previous.passages.text(int(row)) for row in keep] + [p.text for p in passages]
    kept_records = {i: _moved(old.articles[i], files[i]) for i in kept_ids}
    manifest = _manifest(embedder, settings, articles, per_article, skipped, kept_records)
    store.save_update(index_dir, previous, manifest, plan, LexicalIndex.build(texts), settings.exact_limit)
    vectors = len(keep) + len(plan.keep_sentences) + len(passages) + len(plan.sentence_keys)
    return UpdateReport(
        articles=len(manifest.articles),
        passages=manifest.passages,
        embedded=len(reuse.todo),
        reused=vectors - len(reuse.todo),
        **changes,
    )


def _encode(embedder: Embedder, texts: list[str], progress: bool) -> np.ndarray:
    if not texts:
        return np.zeros((0, embedder.dimension), dtype=np.float32)
    return embedder.encode(texts, progress=progress)


def _moved(record: ArticleRecord, path: Path) -> ArticleRecord:
    # The same file, reached through another spelling of the corpus folder.
    return record if record.path == str(path) else replace(record, path=str(path))


def _chunk_all(
    articles: list[Article], settings: _Chunking, embedder: Embedder
) -> tuple[list[Passage], dict[str, int]]:
    from bot.chunk import chunk

    passages: list[Passage] = []
    per_article: dict[str, int] = {}
    for article in articles:
        pieces = chunk(article, settings.tokens, settings.overlap, embedder.count_tokens)
        per_article[article.id] = len(pieces)
        passages.extend(pieces)
    return passages, per_article


def _manifest(
    embedder: Embedder,
    settings: _Chunking,
    articles: list[Article],
    per_article: dict[str, int],
    skipped: dict[str, str],
    kept: dict[str, ArticleRecord] | None = None,
) -> Manifest:
    # Kept articles first, in their row order, then the new ones: the manifest lists articles in row order.
    records = {**(kept or {}), **{a.id: _record(a, per_article[a.id]) for a in articles}}
    return Manifest(
        format_version=FORMAT_VERSION,
        model=embedder.name,
        dimension=embedder.dimension,
        chunk_tokens=settings.tokens,
        chunk_overlap=settings.overlap,
        search=EXACT,  # set by the store, with the dense index it writes
        passages=sum(r.passages for r in records.values()),
        sentences=0,
        articles=records,
        skipped=skipped,
    )


def _reusable(index_dir: Path, embedder: Embedder) -> store.Index | None:
    """The live index if its vectors can be reused (same model); None if there is none or it is broken.

    Vectors are keyed by text, so they stay valid when the chunking settings change.
    """
    try:
        previous = store.load(index_dir, embedder.name)
    except IndexUnavailableError as exc:
        log.info("not reusing the existing index: %s", exc)
        return None
    if previous.manifest.dimension != embedder.dimension:
        return None
    return previous


def _sentence_table(passages: list[Passage]) -> tuple[list[str], list[tuple[int, ...]]]:
    """Unique sentence texts, and for each passage the rows of its sentences in that table."""
    row_of: dict[str, int] = {}
    rows = []
    for passage in passages:
        rows.append(tuple(row_of.setdefault(text, len(row_of)) for text in passage.sentence_texts()))
    return list(row_of), rows


def _gather(vectors: np.ndarray, rows: list[int], dimension: int, dtype: type) -> np.ndarray:
    """vectors[rows] as `dtype`, converted in slices (a float16 table never exists in float32 whole)."""
    out = np.zeros((len(rows), dimension), dtype=dtype)
    step = 65536
    for start in range(0, len(rows), step):
        out[start : start + step] = vectors[rows[start : start + step]]
    return out


def _record(article: Article, passages: int) -> ArticleRecord:
    return ArticleRecord(
        id=article.id,
        path=article.path,
        title=article.title,
        outlet=article.outlet,
        author=article.author,
        date=article.date,
        url=article.url,
        hash=article.content_hash,
        passages=passages,
        label=article.label,
    )
