"""The container's health check: healthy while the index loads, checked the way the bot loads it.

The manifest, the file sizes it records, the FAISS vectors, the passages, the sentence vectors and
the BM25 index are all read, and must agree with each other and with the configured model; torch is
never imported, so a check costs half a second. Articles added since the build do not make the
container unhealthy: the running bot answers from the index it loaded until the next start (or an
admin's /reindex) updates it. Exit 0 when healthy, 1 otherwise, with one line saying why
(`docker inspect` shows it).
"""

from __future__ import annotations

import sys

from bot import store
from bot.config import Settings, canonical_model_name
from bot.errors import ProtestBotError
from bot.manifest import freshness


def check() -> tuple[bool, str]:
    """Whether the configured index loads, and a one-line report."""
    try:
        settings = Settings()
        index = store.load(settings.index, canonical_model_name(settings.model))
    except (ProtestBotError, ValueError) as exc:
        return False, f"unhealthy: {exc}"
    manifest = index.manifest
    report = f"healthy: {len(manifest.articles)} articles, {manifest.passages} passages"
    try:
        fresh = freshness(settings.corpus, manifest)
    except ProtestBotError as exc:
        return True, f"{report}; the articles cannot be compared with it: {exc}"
    if fresh.stale:
        return True, f"{report}; the articles changed since: restart, or send /reindex, to update it"
    return True, report


def main() -> int:
    healthy, report = check()
    print(report)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
