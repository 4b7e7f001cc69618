"""Outgoing requests: Telegram's flood limits waited out, network errors retried with backoff."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from telegram.error import BadRequest, NetworkError
from telegram.ext import AIORateLimiter

log = logging.getLogger(__name__)

RETRY_AFTER_RETRIES = 3
NETWORK_RETRIES = 3
NETWORK_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 8.0


class RetryingRateLimiter(AIORateLimiter):
    """PTB's flood-limit throttle (it waits out 429 RetryAfter) plus retries with backoff on network errors.

    A BadRequest is the request's fault and is not retried. A timed-out send may have arrived, so a
    retry can repeat a message; losing a reply is the worse of the two.
    """

    def __init__(
        self, network_retries: int = NETWORK_RETRIES, backoff: float = NETWORK_BACKOFF_SECONDS, **kwargs: Any
    ) -> None:
        super().__init__(max_retries=RETRY_AFTER_RETRIES, **kwargs)
        self.network_retries = network_retries
        self.backoff = backoff

    async def process_request(
        self,
        callback: Any,
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> Any:
        """Send through the throttle; on a network error wait 0.5, 1, 2… s and send again."""
        for attempt in range(self.network_retries + 1):
            try:
                return await super().process_request(callback, args, kwargs, endpoint, data, rate_limit_args)
            except NetworkError as exc:
                if isinstance(exc, BadRequest) or attempt == self.network_retries:
                    raise
                delay = min(self.backoff * 2**attempt, MAX_BACKOFF_SECONDS)
                log.warning("Bot API %s failed (%s); retrying in %.1f s", endpoint, exc, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")
