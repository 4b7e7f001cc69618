"""The state that replicas of the bot share, behind one small interface with two back ends.

In memory (the default, `MemoryState`): one process, nothing to install. In Redis (`bot/redis_state.py`,
chosen by PROTEST_BOT_REDIS_URL): every replica sees the same rate limits, the same answers behind
buttons, the same follow-up context, and the same record of which webhook updates are taken or done.
The handlers and the HTTP API talk to `SharedState` only, so they cannot tell the two apart. No
telegram and no redis import here.
"""

from __future__ import annotations

import asyncio
import enum
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, Protocol, TypeVar

from bot.models import Answer, AnswerSpan, Citation, Source
from bot.telegram.state import AnswerStore, Conversations, RateLimiter, Shown, Verdict

T = TypeVar("T")

# How long Redis keeps what buttons and follow-ups need. Memory keeps a fixed number instead
# (AnswerStore, Conversations); a TTL is Redis's way of bounding the same thing.
ANSWER_SECONDS = 7 * 24 * 3600
CONVERSATION_SECONDS = 24 * 3600
# A done update is remembered for as long as Telegram may redeliver it (it gives up after a day).
DONE_SECONDS = 24 * 3600


class StateUnavailable(Exception):
    """The shared store cannot be reached, and the value is not held locally either."""


class Claim(enum.Enum):
    """What claiming a webhook update found."""

    FRESH = "fresh"  # nobody had it (or its claim expired): this replica answers it
    DONE = "done"  # answered already: acknowledge and skip
    BUSY = "busy"  # a live replica is answering it: ask Telegram to deliver it again later


class Limiter(Protocol):
    """Per-user and overall token buckets (see `RateLimiter`)."""

    async def check(self, user_id: int) -> Verdict:
        """Take one token, or say how long to wait."""
        ...


class SharedState(Protocol):
    """What every front end and replica shares."""

    def limiter(self, scope: str, per_user: int, overall: int) -> Limiter:
        """A limiter of its own for `scope` ("tg", "inline", "api")."""
        ...

    async def add_answer(self, shown: Shown) -> str:
        """Remember an answer sent with buttons; returns the key the buttons carry."""
        ...

    async def get_answer(self, key: str) -> Shown | None:
        """The answer behind `key`, None if unknown or expired; StateUnavailable if it can't be fetched."""
        ...

    async def update_answer(self, key: str, change: Callable[[Shown], T]) -> tuple[Shown, T] | None:
        """Apply `change` to the stored answer atomically (no other replica interleaves); None if unknown."""
        ...

    async def last_answer(self, chat_id: int) -> Answer | None:
        """The chat's previous answer, for a follow-up."""
        ...

    async def remember(self, chat_id: int, answer: Answer) -> None:
        """Keep `answer` as the chat's latest."""
        ...

    async def claim(self, update_id: int, seconds: float) -> Claim:
        """Take a webhook update for `seconds` (renewed by `renew` while it is answered)."""
        ...

    async def renew(self, update_id: int, seconds: float) -> None:
        """Extend this replica's claim on an update it is still answering."""
        ...

    async def finish(self, update_id: int) -> None:
        """Record an update as answered."""
        ...

    async def release(self, update_id: int) -> None:
        """Give up a claim without answering, so the update can be taken again at once."""
        ...

    async def try_lock(self, name: str, seconds: float) -> str | None:
        """A lock held for at most `seconds`: its token, or None when someone holds it."""
        ...

    async def unlock(self, name: str, token: str) -> None:
        """Release a lock taken with `try_lock` (only if still ours)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class LocalLimiter:
    """A `RateLimiter` behind the async interface."""

    def __init__(self, per_user: int, overall: int) -> None:
        self.limiter = RateLimiter(per_user, overall)

    async def check(self, user_id: int) -> Verdict:
        """Take one token, or say how long to wait."""
        return self.limiter.check(user_id)


class MemoryState:
    """All state in this process: exactly what one replica needs, and what Redis falls back to."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.answers = AnswerStore()
        self.conversations = Conversations()
        self._claims: OrderedDict[int, tuple[str, float]] = OrderedDict()
        self._locks: dict[str, tuple[str, float]] = {}
        self._limiters: dict[str, LocalLimiter] = {}

    def limiter(self, scope: str, per_user: int, overall: int) -> Limiter:
        """The limiter of `scope` (made on first use with these rates)."""
        if scope not in self._limiters:
            self._limiters[scope] = LocalLimiter(per_user, overall)
        return self._limiters[scope]

    async def add_answer(self, shown: Shown) -> str:
        """Remember an answer; returns its key."""
        return self.answers.add_shown(shown)

    async def get_answer(self, key: str) -> Shown | None:
        """The answer behind `key`, or None."""
        return self.answers.get(key)

    async def update_answer(self, key: str, change: Callable[[Shown], T]) -> tuple[Shown, T] | None:
        """Apply `change` in place: no await in between, so nothing interleaves."""
        shown = self.answers.get(key)
        return None if shown is None else (shown, change(shown))

    async def last_answer(self, chat_id: int) -> Answer | None:
        """The chat's previous answer."""
        return self.conversations.last(chat_id)

    async def remember(self, chat_id: int, answer: Answer) -> None:
        """Keep `answer` as the chat's latest."""
        self.conversations.remember(chat_id, answer)

    async def claim(self, update_id: int, seconds: float) -> Claim:
        """Take an update unless it is done or claimed and unexpired."""
        now = self.clock()
        held = self._claims.get(update_id)
        if held is not None and held[0] == "done":
            return Claim.DONE
        if held is not None and held[1] > now:
            return Claim.BUSY
        self._set_claim(update_id, "busy", now + seconds)
        return Claim.FRESH

    async def renew(self, update_id: int, seconds: float) -> None:
        """Extend a claim still held."""
        if self._claims.get(update_id, ("",))[0] == "busy":
            self._set_claim(update_id, "busy", self.clock() + seconds)

    async def finish(self, update_id: int) -> None:
        """Record an update as answered."""
        self._set_claim(update_id, "done", self.clock() + DONE_SECONDS)

    async def release(self, update_id: int) -> None:
        """Forget a claim."""
        self._claims.pop(update_id, None)

    def _set_claim(self, update_id: int, status: str, until: float) -> None:
        self._claims[update_id] = (status, until)
        self._claims.move_to_end(update_id)
        while len(self._claims) > 100_000:  # bounded like the other stores: oldest first
            self._claims.popitem(last=False)

    async def try_lock(self, name: str, seconds: float) -> str | None:
        """A lock for `seconds` at most."""
        held = self._locks.get(name)
        if held is not None and held[1] > self.clock():
            return None
        token = secrets.token_hex(8)
        self._locks[name] = (token, self.clock() + seconds)
        return token

    async def unlock(self, name: str, token: str) -> None:
        """Release the lock if it is still ours."""
        if self._locks.get(name, ("",))[0] == token:
            del self._locks[name]

    async def close(self) -> None:
        """Nothing to release."""


def open_state(redis_url: str | None, namespace: str = "", timeout: float = 0.5) -> SharedState:
    """Redis when a URL is given (keys under `namespace`: the bot's id, or "serve"), else memory.
    Nothing is sent until the first use, so a Redis that is down at start does not stop the bot."""
    if not redis_url:
        return MemoryState()
    from bot.redis_state import RedisState

    return RedisState(redis_url, timeout=timeout, namespace=namespace)


# --- encoding answers for Redis -----------------------------------------------------------------


def encode_shown(shown: Shown) -> dict[str, Any]:
    """A remembered answer as JSON-ready data."""
    return {
        "answer": encode_answer(shown.answer),
        "shown": sorted(shown.shown),
        "notes_shown": sorted(shown.notes_shown),
        "votes": {str(user): vote for user, vote in shown.votes.items()},
        "more_dropped": sorted(shown.more_dropped),
    }


def decode_shown(data: dict[str, Any]) -> Shown:
    """The inverse of `encode_shown`."""
    return Shown(
        decode_answer(data["answer"]),
        shown=set(data["shown"]),
        notes_shown=set(data["notes_shown"]),
        votes={int(user): vote for user, vote in data["votes"].items()},
        more_dropped=set(data["more_dropped"]),
    )


def encode_answer(answer: Answer) -> dict[str, Any]:
    """An Answer as JSON-ready data (all of it: buttons page through its citations later)."""
    return asdict(answer)


def decode_answer(data: dict[str, Any]) -> Answer:
    """The inverse of `encode_answer`."""
    span = data.get("answer_span")
    return Answer(
        **{
            **data,
            "citations": _citations(data["citations"]),
            "notes": tuple(data.get("notes", ())),
            "answer_span": AnswerSpan(**span) if span else None,
            "related": _citations(data.get("related", ())),
        }
    )


def _citations(items: Any) -> tuple[Citation, ...]:
    return tuple(Citation(**{**c, "sources": tuple(Source(**s) for s in c["sources"])}) for c in items)


async def renew_while(state: SharedState, update_id: int, seconds: float) -> None:
    """Renew a claim every third of its lifetime until cancelled (the answer is done)."""
    while True:
        await asyncio.sleep(seconds / 3)
        await state.renew(update_id, seconds)
