"""The index's status, as `protest-bot index status --json` prints it and `GET /status` returns it."""

from __future__ import annotations

from typing import Any

from bot import manifest as index_manifest
from bot.config import Settings


def index_status(settings: Settings, verify: bool = False) -> dict[str, Any]:
    """Articles, passages, model, and what changed in the corpus since the live index was built.

    With `verify`, every index file's size and SHA-256 is checked first, as loading does (the CLI's
    `index status`); the server's `/status` reads the manifest only, so a poll costs nothing."""
    read = index_manifest.verify if verify else index_manifest.read_manifest
    manifest = read(settings.index)
    fresh = index_manifest.freshness(settings.corpus, manifest)
    return {
        "index": str(settings.index),
        "model": manifest.model,
        "dimension": manifest.dimension,
        "articles": len(manifest.articles),
        "passages": manifest.passages,
        "search": manifest.search,
        "chunk_tokens": manifest.chunk_tokens,
        "chunk_overlap": manifest.chunk_overlap,
        "built_at": manifest.built_at,
        "stale": fresh.stale,
        "added": list(fresh.added),
        "changed": list(fresh.changed),
        "removed": list(fresh.removed),
        "moved": list(fresh.moved),
    }
