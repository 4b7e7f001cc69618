"""What every front end does first: the index brought up to date (`ensure_index`), then the engine
loaded over it (`open_engine`). The engine only reads (bot/engine.py); the indexer writes
(bot/indexer.py); this module decides when a first question must wait for a build or an update.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot import store
from bot.config import Settings
from bot.embed import Embedder, load_embedder
from bot.engine import Engine, load_engine
from bot.errors import IndexCorruptError, IndexMismatchError, IndexMissingError, IndexUnavailableError
from bot.indexer import describe_changes, update_from_settings
from bot.manifest import Freshness, Manifest, freshness, read_manifest

log = logging.getLogger(__name__)


def open_engine(
    settings: Settings, notify: Callable[[str], None] = log.info, progress: bool = False
) -> Engine:
    """Load the model, build or update the index if needed (`ensure_index`), and load the engine."""
    embedder = load_embedder(settings.model, settings.batch_size)
    ensure_index(settings, embedder, notify, progress)
    return load_engine(settings, embedder)


def ensure_index(
    settings: Settings, embedder: Embedder, notify: Callable[[str], None] = log.info, progress: bool = False
) -> None:
    """Build the index if there is none, update it if the corpus or the chunking changed: what every
    front end does before it loads the engine.

    A new user's first question just works: a missing index is built, a stale one updated, and
    `notify` is told so. A corrupt index or one built with another model is an error to fix. A stale
    index that cannot be updated here (a read-only volume, another writer busy) still answers, as
    built, with a warning: the articles it has are better than no answer.
    """
    try:
        manifest: Manifest | None = read_manifest(settings.index)
    except IndexMissingError:
        manifest = None
    if manifest is None:
        notify(f"No index yet: building it from {settings.corpus}/ (once)…")
        _update_and_tell(settings, embedder, progress, notify)
        return
    if manifest.model != embedder.name:
        store.load(settings.index, embedder.name)  # raises the mismatch error with its advice
    fresh = freshness(settings.corpus, manifest)
    same_chunks = (manifest.chunk_tokens, manifest.chunk_overlap) == (
        settings.chunk_tokens,
        settings.chunk_overlap,
    )
    # A moved corpus is updated too, though not stale: citations must name files that exist.
    if not fresh.stale and not fresh.moved and same_chunks:
        return
    notify(f"The corpus changed since the index was built: updating it ({_describe(fresh)})…")
    try:
        _update_and_tell(settings, embedder, progress, notify)
    except (IndexCorruptError, IndexMismatchError):
        raise
    except IndexUnavailableError as exc:  # not writable, or another writer busy: the index itself is sound
        log.warning("could not update the index (%s); answering from the index as it was built", exc)


def _update_and_tell(
    settings: Settings, embedder: Embedder, progress: bool, notify: Callable[[str], None]
) -> None:
    report = update_from_settings(settings, embedder, progress=progress)
    notify(f"Index ready: {report.articles} articles, {report.passages} passages.")


def _describe(fresh: Freshness) -> str:
    return describe_changes(fresh) or "chunking settings changed"
