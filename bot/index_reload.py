"""Reloading a running engine's index when `protest-bot add` or `index update` writes a newer one.

A writer swaps the index folder's CURRENT pointer atomically (see `store`), so a reader only has to
notice that CURRENT names another version and load it. Checking is one small file read, cheap
enough to do every couple of seconds. A version that fails to load (corrupt, another model) is
logged once, in one line, and the old engine keeps answering; it is tried again only when CURRENT
changes once more. Questions in flight keep the engine they started with: the swap is one reference.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from bot import store
from bot.engine import Engine
from bot.errors import ProtestBotError
from bot.manifest import CURRENT, current_version

log = logging.getLogger(__name__)


class IndexReloader:
    """Loads the live index of `root` when it is newer than the one an engine answers from."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._refused: str | None = None  # a version that failed to load, not tried again

    def newer(self, engine: Engine) -> Engine | None:
        """An engine over the live index when CURRENT names a version other than `engine`'s, else None.

        Blocking (it reads and checks every index file): run it in a thread.
        """
        loaded = getattr(getattr(engine, "index", None), "folder", None)
        if loaded is None:
            return None  # not loaded from an index folder (an in-memory index): nothing to compare
        try:
            live = current_version(self.root).name
        except ProtestBotError as exc:
            return self._refuse(str(self.root / CURRENT), exc)
        if live in (loaded.name, self._refused):
            return None
        try:
            index = store.load(self.root, engine.embedder.name)
        except ProtestBotError as exc:
            return self._refuse(live, exc)
        self._refused = None
        log.info(
            "reloaded the index: %s (%d articles, %d passages)",
            index.folder.name if index.folder else live,
            len(index.manifest.articles),
            index.manifest.passages,
        )
        return engine.with_index(index)

    def _refuse(self, version: str, exc: ProtestBotError) -> None:
        if version != self._refused:
            log.warning(
                "could not load the new index %s (%s); still answering from the old one", version, exc
            )
            self._refused = version
        return None


async def keep_current(
    reloader: IndexReloader,
    get: Callable[[], Engine | None],
    put: Callable[[Engine], None],
    every: float,
) -> None:
    """Check for a newer index every `every` seconds until cancelled, swapping the engine in with `put`."""
    while True:
        await asyncio.sleep(every)
        engine = get()
        if engine is None:
            continue
        try:
            fresh = await asyncio.to_thread(reloader.newer, engine)
        except Exception:  # a bug here must not end reloading for the life of the process
            log.exception("checking for a newer index failed")
            continue
        if fresh is not None and get() is engine:  # not replaced meanwhile (Telegram's /reindex)
            put(fresh)
