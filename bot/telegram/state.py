"""What the Telegram front end remembers between updates: rate-limit buckets, recent answers behind
buttons, and the compact callback data those buttons carry. Plain Python; no telegram import."""

from __future__ import annotations

import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.models import Answer, Citation

# Telegram refuses a button whose callback_data is longer than this (BUTTON_DATA_INVALID).
CALLBACK_DATA_LIMIT = 64


# --- rate limits --------------------------------------------------------------------------------


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass(frozen=True)
class Verdict:
    """Whether a question may be answered now; if not, how long to wait, and whether to say so."""

    allowed: bool
    wait: float = 0.0
    everyone: bool = False
    warn: bool = False


class RateLimiter:
    """Per-user and overall token buckets: a burst up to the per-minute rate, refilled evenly.

    A refused user is told once per wait, so flooding the bot does not make it flood the chat.
    """

    def __init__(
        self,
        per_user: int,
        overall: int,
        clock: Callable[[], float] = time.monotonic,
        max_users: int = 10_000,
    ) -> None:
        self.per_user = per_user
        self.overall = overall
        self.clock = clock
        self.max_users = max_users
        self._users: dict[int, _Bucket] = {}
        self._overall = _Bucket(float(overall), clock())
        self._warned_until: dict[int, float] = {}

    def check(self, user_id: int) -> Verdict:
        """Take one token from the user's bucket and the overall one, or say how long to wait."""
        now = self.clock()
        user = self._users.get(user_id) or self._new_bucket(user_id, now)
        _refill(user, self.per_user, now)
        _refill(self._overall, self.overall, now)
        if user.tokens >= 1 and self._overall.tokens >= 1:
            user.tokens -= 1
            self._overall.tokens -= 1
            return Verdict(allowed=True)
        everyone = user.tokens >= 1
        bucket, rate = (self._overall, self.overall) if everyone else (user, self.per_user)
        wait = (1 - bucket.tokens) * 60.0 / rate
        warn = self._warned_until.get(user_id, 0.0) <= now
        if warn:
            self._warned_until[user_id] = now + wait
        return Verdict(allowed=False, wait=wait, everyone=everyone, warn=warn)

    def _new_bucket(self, user_id: int, now: float) -> _Bucket:
        if len(self._users) >= self.max_users:
            self._forget_idle(now)
        bucket = self._users[user_id] = _Bucket(float(self.per_user), now)
        return bucket

    def _forget_idle(self, now: float) -> None:
        """Drop buckets that have refilled completely: they hold no information."""
        for user_id, bucket in list(self._users.items()):
            _refill(bucket, self.per_user, now)
            if bucket.tokens >= self.per_user:
                del self._users[user_id]
                self._warned_until.pop(user_id, None)


def _refill(bucket: _Bucket, per_minute: int, now: float) -> None:
    bucket.tokens = min(float(per_minute), bucket.tokens + (now - bucket.updated) * per_minute / 60.0)
    bucket.updated = now


# --- answers behind buttons ---------------------------------------------------------------------


_CITATION_REF = re.compile(r"\[(\d+)\]")


@dataclass
class Shown:
    """An answer sent to a chat: which citations and notes have been shown, and who voted how."""

    answer: Answer
    shown: set[int] = field(default_factory=set)
    notes_shown: set[int] = field(default_factory=set)
    votes: dict[int, str] = field(default_factory=dict)
    # Messages whose More button was already taken away: a second tap must not repeat the edit,
    # which Telegram refuses ("message is not modified").
    more_dropped: set[int] = field(default_factory=set)

    @property
    def more(self) -> bool:
        """Whether some citations have not been shown yet."""
        return any(c.n not in self.shown for c in self.answer.citations)

    def next_page(self, size: int) -> tuple[list[Citation], list[str]]:
        """The next `size` citations not yet shown, and marks them shown.

        A note that compares citations ("different figures: 3,100 in [1], 4,000 in [10]") brings the
        citations it names onto the page of the first of them, and is shown once all are visible.
        """
        by_number = {c.n: c for c in self.answer.citations}
        page = {n for n in by_number if n not in self.shown}
        page = set(sorted(page)[:size])
        for note in self.answer.notes:
            named = _named(note, by_number)
            if named & page:
                page |= named - self.shown
        self.shown |= page
        notes = []
        for i, note in enumerate(self.answer.notes):
            if i not in self.notes_shown and _named(note, by_number) <= self.shown:
                self.notes_shown.add(i)
                notes.append(note)
        return [by_number[n] for n in sorted(page)], notes


def _named(note: str, by_number: dict[int, Citation]) -> set[int]:
    return {int(n) for n in _CITATION_REF.findall(note) if int(n) in by_number}


class AnswerStore:
    """The most recent answers, by a short random key that buttons carry (oldest forgotten first).

    Keys are random, so callback data cannot be forged to reach another chat's answer, and an
    answer from before a restart is simply unknown: the button says so instead of failing.
    """

    def __init__(self, capacity: int = 2048) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, Shown] = OrderedDict()

    def add(self, answer: Answer) -> str:
        """Remember an answer; returns its key."""
        return self.add_shown(Shown(answer))

    def add_shown(self, shown: Shown) -> str:
        """Remember an answer with what has been shown of it; returns its key."""
        key = secrets.token_urlsafe(6)
        while key in self._items:
            key = secrets.token_urlsafe(6)
        self._items[key] = shown
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return key

    def get(self, key: str) -> Shown | None:
        """The answer behind `key`, or None when it is unknown or forgotten."""
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def __len__(self) -> int:
        return len(self._items)


class Conversations:
    """The last answer in each private chat, so a follow-up ("how many signed it?") is read with
    the question before it. Bounded: the least recently active chats are forgotten first."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._last: OrderedDict[int, Answer] = OrderedDict()

    def last(self, chat_id: int) -> Answer | None:
        """The chat's previous answer, if it is remembered."""
        return self._last.get(chat_id)

    def remember(self, chat_id: int, answer: Answer) -> None:
        """Keep `answer` as the chat's latest."""
        self._last[chat_id] = answer
        self._last.move_to_end(chat_id)
        while len(self._last) > self.capacity:
            self._last.popitem(last=False)

    def __len__(self) -> int:
        return len(self._last)


# --- callback data ------------------------------------------------------------------------------

MORE, VOTE, EXAMPLE = "m", "v", "x"
UP, DOWN = "up", "down"


@dataclass(frozen=True)
class ButtonData:
    """What a pressed button asks for: more citations, a vote, or an example question."""

    action: str
    key: str
    value: str = ""


def encode(action: str, key: str, value: str = "") -> str:
    """Callback data for a button, checked against Telegram's 64-byte limit."""
    data = ":".join(part for part in (action, key, value) if part)
    if len(data.encode("utf-8")) > CALLBACK_DATA_LIMIT:
        raise ValueError(f"callback data over {CALLBACK_DATA_LIMIT} bytes: {data!r}")
    return data


def decode(data: str | None) -> ButtonData | None:
    """The button behind callback data, or None for data this bot never made (forged or from elsewhere)."""
    if not data or len(data.encode("utf-8")) > CALLBACK_DATA_LIMIT:
        return None
    parts = data.split(":")
    if parts[0] == MORE and len(parts) == 2 and parts[1]:
        return ButtonData(MORE, parts[1])
    if parts[0] == VOTE and len(parts) == 3 and parts[1] and parts[2] in (UP, DOWN):
        return ButtonData(VOTE, parts[1], parts[2])
    if parts[0] == EXAMPLE and len(parts) == 2 and parts[1].isdigit() and len(parts[1]) <= 3:
        return ButtonData(EXAMPLE, parts[1])
    return None
