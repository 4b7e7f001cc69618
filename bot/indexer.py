"""Building and updating the index from the corpus, embedding only text it has not seen.

Every vector is keyed by the text it was computed from: an update reuses the stored vector of any
passage or sentence whose text is unchanged, so only new or edited text reaches the model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bot import store
from bot.chunk import chunk
from bot.corpus import corpus_hashes, read_corpus
from bot.embed import Embedder
from bot.errors import BadInputError, IndexError_
from bot.lexical import LexicalIndex
from bot.models import Article, Passage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Freshness:
    """How the corpus on disk compares with the index: what an update would do."""

    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]

    @property
    def stale(self) -> bool:
        return bool(self.added or self.changed or self.removed)


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


def freshness(corpus_dir: Path, manifest: store.Manifest) -> Freshness:
    """Compare the corpus files' hashes with those recorded in the manifest (no parsing, no model)."""
    on_disk = corpus_hashes(corpus_dir)
    indexed = manifest.hashes()
    return Freshness(
        added=tuple(sorted(set(on_disk) - set(indexed))),
        changed=tuple(sorted(i for i in on_disk.keys() & indexed.keys() if on_disk[i] != indexed[i])),
        removed=tuple(sorted(set(indexed) - set(on_disk))),
    )


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
    """Bring the index in line with the corpus; with `full`, rebuild it without reusing anything."""
    if chunk_tokens > embedder.max_tokens:
        raise BadInputError(
            f"--chunk-tokens {chunk_tokens} is more than the model reads ({embedder.max_tokens} word pieces)"
        )
    with store.write_lock(index_dir):
        previous = None if full else _reusable(index_dir, embedder)
        articles = read_corpus(corpus_dir)
        hashes = corpus_hashes(corpus_dir)
        parsed = {a.id for a in articles}
        skipped = {i: h for i, h in hashes.items() if i not in parsed}

        passages: list[Passage] = []
        per_article: dict[str, int] = {}
        for article in articles:
            pieces = chunk(article, chunk_tokens, chunk_overlap, embedder.count_tokens)
            per_article[article.id] = len(pieces)
            passages.extend(pieces)

        sentence_texts, sentence_rows = _sentence_table(passages)
        cache = _vector_cache(previous)
        passage_texts = [p.text for p in passages]
        todo = sorted({t for t in passage_texts + sentence_texts if t not in cache})
        log.info(
            "embedding %d new texts, reusing %d",
            len(todo),
            len(passage_texts) + len(sentence_texts) - len(todo),
        )
        if todo:
            vectors = embedder.encode(todo, progress=progress)
            cache.update(zip(todo, vectors, strict=True))

        dim = embedder.dimension
        passage_vectors = _stack([cache[t] for t in passage_texts], dim)
        sentence_vectors = _stack([cache[t] for t in sentence_texts], dim)
        manifest = store.Manifest(
            format_version=store.FORMAT_VERSION,
            model=embedder.name,
            dimension=dim,
            chunk_tokens=chunk_tokens,
            chunk_overlap=chunk_overlap,
            search="hnsw" if len(passages) > exact_limit else "exact",
            passages=len(passages),
            sentences=len(sentence_texts),
            articles={a.id: _record(a, per_article[a.id]) for a in articles},
            skipped=skipped,
        )
        store.save(
            index_dir,
            manifest,
            passages,
            sentence_rows,
            passage_vectors,
            sentence_vectors,
            LexicalIndex.build(passage_texts),
            exact_limit,
        )
    old_hashes = previous.manifest.hashes() if previous else {}
    return UpdateReport(
        articles=len(articles),
        passages=len(passages),
        added=tuple(sorted(set(hashes) - set(old_hashes))),
        changed=tuple(sorted(i for i in hashes.keys() & old_hashes.keys() if hashes[i] != old_hashes[i])),
        removed=tuple(sorted(set(old_hashes) - set(hashes))),
        skipped=tuple(sorted(skipped)),
        embedded=len(todo),
        reused=len(set(passage_texts + sentence_texts)) - len(todo),
    )


def _reusable(index_dir: Path, embedder: Embedder) -> store.Index | None:
    """The live index if its vectors can be reused (same model); None if there is none or it is broken.

    Vectors are keyed by text, so they stay valid when the chunking settings change.
    """
    try:
        previous = store.load(index_dir, embedder.name)
    except IndexError_ as exc:
        log.info("not reusing the existing index: %s", exc)
        return None
    if previous.manifest.dimension != embedder.dimension:
        return None
    return previous


def _vector_cache(previous: store.Index | None) -> dict[str, np.ndarray]:
    """Text → stored vector, for every passage and sentence of the previous index."""
    if previous is None:
        return {}
    cache: dict[str, np.ndarray] = {}
    vectors = previous.passage_vectors()
    for passage, vector in zip(previous.passages, vectors, strict=True):
        cache[passage.text] = vector
    for passage, rows in zip(previous.passages, previous.sentence_rows, strict=True):
        for text, row in zip(passage.sentence_texts(), rows, strict=True):
            # Stored as float16; renormalize so reused vectors are unit length like fresh ones.
            vector = previous.sentence_vectors[row].astype(np.float32)
            cache.setdefault(text, vector / max(float(np.linalg.norm(vector)), 1e-12))
    return cache


def _sentence_table(passages: list[Passage]) -> tuple[list[str], list[tuple[int, ...]]]:
    """Unique sentence texts, and for each passage the rows of its sentences in that table."""
    row_of: dict[str, int] = {}
    rows = []
    for passage in passages:
        rows.append(tuple(row_of.setdefault(text, len(row_of)) for text in passage.sentence_texts()))
    return list(row_of), rows


def _stack(vectors: list[np.ndarray], dimension: int) -> np.ndarray:
    if not vectors:
        return np.zeros((0, dimension), dtype=np.float32)
    return np.vstack(vectors).astype(np.float32)


def _record(article: Article, passages: int) -> store.ArticleRecord:
    return store.ArticleRecord(
        id=article.id,
        path=article.path,
        title=article.title,
        outlet=article.outlet,
        author=article.author,
        date=article.date,
        url=article.url,
        hash=article.content_hash,
        passages=passages,
    )
