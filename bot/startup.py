"""What every front end does first: the index brought up to date, then the engine loaded over it.

The engine only reads (bot/engine.py); building and updating is the indexer's (bot/indexer.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot.config import Settings
from bot.embed import load_embedder
from bot.engine import Engine, load_engine
from bot.indexer import ensure_index

log = logging.getLogger(__name__)


def open_engine(
    settings: Settings, notify: Callable[[str], None] = log.info, progress: bool = False
) -> Engine:
    """Load the model, build or update the index if needed (`ensure_index`), and load the engine."""
    embedder = load_embedder(settings.model)
    ensure_index(settings, embedder, notify, progress)
    return load_engine(settings, embedder)
