"""The shared state in Redis (redis-py, asyncio): the only module that imports redis.

Every read-modify-write is atomic on the server: the token buckets and the update claims are Lua
scripts, a button's answer is changed in a WATCH/MULTI transaction. Redis's own clock (TIME) times
the buckets, so replicas on machines whose clocks differ still share one rate.

When Redis is down or slow (short socket timeouts), the bot keeps answering from a `MemoryState` of
its own: limits per replica, answers and follow-ups remembered locally, updates answered without a
claim (a duplicate is better than a lost question). One line is logged when Redis is lost and one
when it is back; while it is down it is tried again once a second, not on every message.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from bot.errors import BadInputError
from bot.models import Answer
from bot.shared_state import (
    ANSWER_SECONDS,
    CONVERSATION_SECONDS,
    DONE_SECONDS,
    Claim,
    Limiter,
    MemoryState,
    StateUnavailable,
    decode_answer,
    decode_shown,
    encode_answer,
    encode_shown,
)
from bot.telegram.redact import protect_secret
from bot.telegram.state import Shown, Verdict

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError, WatchError
except ImportError:  # the optional extra is not installed
    aioredis = None  # type: ignore[assignment]

log = logging.getLogger(__name__)
T = TypeVar("T")

PREFIX = "protest-bot:"
RETRY_DOWN_SECONDS = 1.0  # while Redis is down, how often a request tries it again
TRANSACTION_ATTEMPTS = 8

# Two token buckets at once (the user's and everyone's), refilled by Redis's clock; a refused user
# is told once per wait (the NX marker). Returns {allowed, wait seconds as text, everyone, warn}.
TOKEN_BUCKETS = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function level(key, rate)
  local b = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(b[1]) or rate
  local ts = tonumber(b[2]) or now
  return math.min(rate, tokens + math.max(0, now - ts) * rate / 60)
end
local function store(key, tokens, rate)
  redis.call('HSET', key, 'tokens', tokens, 'ts', now)
  -- kept until it would be full again: an idle user costs no memory
  redis.call('PEXPIRE', key, math.ceil(60000 * (rate - tokens) / rate) + 1000)
end
local per_user, overall = tonumber(ARGV[1]), tonumber(ARGV[2])
local u, g = level(KEYS[1], per_user), level(KEYS[2], overall)
local allowed = u >= 1 and g >= 1
if allowed then u = u - 1; g = g - 1 end
store(KEYS[1], u, per_user)
store(KEYS[2], g, overall)
if allowed then return {1, '0', 0, 0} end
local everyone = u >= 1
local wait
if everyone then wait = (1 - g) * 60 / overall else wait = (1 - u) * 60 / per_user end
local warn = redis.call('SET', KEYS[3], '1', 'PX', math.max(1, math.ceil(wait * 1000)), 'NX')
return {0, tostring(wait), everyone and 1 or 0, warn and 1 or 0}
"""

# Take an update unless it is done or held; "done" is a value, so a done update stays done.
CLAIM = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 'fresh' end
if redis.call('GET', KEYS[1]) == 'done' then return 'done' end
return 'busy'
"""
# Extend (ARGV[2] ms) or delete (no ARGV[2]) a claim or lock, only while it still holds our token.
IF_OURS = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return redis.call('DEL', KEYS[1])
"""


def redacted_url(url: str) -> str:
    """The URL without its password, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:" if parts.username else ":"
    return urlunsplit(parts._replace(netloc=f"{user}***@{host}"))


class RedisState:
    """`SharedState` in Redis, with a `MemoryState` to fall back on while Redis cannot be reached."""

    def __init__(self, url: str, timeout: float = 0.5, namespace: str = "") -> None:
        if aioredis is None:
            raise BadInputError(
                "PROTEST_BOT_REDIS_URL is set but redis-py is not installed: pip install 'protest-bot[redis]'"
            )
        password = urlsplit(url).password
        if password:
            protect_secret(password)
        self.where = redacted_url(url)
        try:
            self.client = aioredis.Redis.from_url(
                url,
                decode_responses=True,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                # One immediate retry: after a Redis restart the first use of a pooled connection fails.
                retry=Retry(NoBackoff(), 1),
            )
        except ValueError as exc:  # e.g. a port that is not a number; the message may quote the URL
            raise BadInputError(
                f"PROTEST_BOT_REDIS_URL is not a Redis URL redis-py accepts: {self.where}"
            ) from exc
        self.local = MemoryState()
        # Keys are per bot: Telegram numbers updates per bot, and two bots may share one Redis.
        self.prefix = f"{PREFIX}{namespace}:" if namespace else PREFIX
        self.owner = f"{socket.gethostname()}-{secrets.token_hex(4)}"  # this replica, in claims
        self.down = False
        self._retry_at = 0.0
        self._buckets = self.client.register_script(TOKEN_BUCKETS)
        self._claim = self.client.register_script(CLAIM)
        self._if_ours = self.client.register_script(IF_OURS)

    async def _call(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis operation; StateUnavailable (after logging the loss once) when it fails."""
        now = time.monotonic()
        if self.down and now < self._retry_at:
            raise StateUnavailable(self.where)
        try:
            result = await operation()
        except (RedisError, OSError, TimeoutError) as exc:
            if not self.down:
                log.warning(
                    "lost Redis at %s (%s); answering with this replica's own memory until it returns",
                    self.where,
                    type(exc).__name__,
                )
            self.down, self._retry_at = True, now + RETRY_DOWN_SECONDS
            raise StateUnavailable(self.where) from None
        if self.down:
            log.warning("Redis at %s is back; state is shared again", self.where)
            self.down = False
        return result

    # --- rate limits ----------------------------------------------------------------------------

    def limiter(self, scope: str, per_user: int, overall: int) -> Limiter:
        """Token buckets in Redis for `scope`, with this replica's own as the fallback."""
        return RedisLimiter(self, scope, per_user, overall)

    # --- answers behind buttons, follow-ups -----------------------------------------------------

    async def add_answer(self, shown: Shown) -> str:
        """Store the answer under a fresh random key with a TTL (locally while Redis is down)."""
        data = json.dumps(encode_shown(shown))
        for _ in range(TRANSACTION_ATTEMPTS):
            key = secrets.token_urlsafe(6)
            try:
                stored = await self._call(
                    lambda k=key: self.client.set(
                        self.prefix + "answer:" + k, data, ex=ANSWER_SECONDS, nx=True
                    )
                )
            except StateUnavailable:
                return await self.local.add_answer(shown)
            if stored:
                return key
        raise RuntimeError("no free answer key")  # 48 random bits: in practice unreachable

    async def get_answer(self, key: str) -> Shown | None:
        """The answer behind `key`: from Redis, else from what this replica kept while Redis was down."""
        try:
            raw = await self._call(lambda: self.client.get(self.prefix + "answer:" + key))
        except StateUnavailable:
            if (local := await self.local.get_answer(key)) is None:
                raise
            return local
        return decode_shown(json.loads(raw)) if raw is not None else await self.local.get_answer(key)

    async def update_answer(self, key: str, change: Callable[[Shown], T]) -> tuple[Shown, T] | None:
        """`change` applied in a WATCH/MULTI transaction, retried if another replica changed it first."""
        if await self.local.get_answer(key) is not None:
            return await self.local.update_answer(key, change)
        return await self._call(lambda: self._transaction(self.prefix + "answer:" + key, change))

    async def _transaction(self, name: str, change: Callable[[Shown], T]) -> tuple[Shown, T] | None:
        async with self.client.pipeline(transaction=True) as pipe:
            for _ in range(TRANSACTION_ATTEMPTS):
                try:
                    await pipe.watch(name)
                    raw = await pipe.get(name)
                    if raw is None:
                        return None
                    shown = decode_shown(json.loads(raw))
                    result = change(shown)
                    pipe.multi()
                    pipe.set(name, json.dumps(encode_shown(shown)), keepttl=True)
                    await pipe.execute()
                    return shown, result
                except WatchError:
                    continue
        # Contention, not an outage: the tap gets the polite note, and Redis is not marked lost.
        raise StateUnavailable("the answer kept changing under the transaction")

    async def last_answer(self, chat_id: int) -> Answer | None:
        """The chat's previous answer (this replica's own while Redis is down)."""
        try:
            raw = await self._call(lambda: self.client.get(f"{self.prefix}chat:{chat_id}"))
        except StateUnavailable:
            return await self.local.last_answer(chat_id)
        return decode_answer(json.loads(raw)) if raw is not None else None

    async def remember(self, chat_id: int, answer: Answer) -> None:
        """Keep the chat's latest answer for a day."""
        data = json.dumps(encode_answer(answer))
        try:
            await self._call(
                lambda: self.client.set(f"{self.prefix}chat:{chat_id}", data, ex=CONVERSATION_SECONDS)
            )
        except StateUnavailable:
            await self.local.remember(chat_id, answer)

    # --- webhook updates ------------------------------------------------------------------------

    async def claim(self, update_id: int, seconds: float) -> Claim:
        """Claim an update in Redis; without Redis, answer it anyway (never lose one)."""
        name = f"{self.prefix}update:{update_id}"
        try:
            found = await self._call(lambda: self._claim(keys=[name], args=[self.owner, _ms(seconds)]))
        except StateUnavailable:
            return await self.local.claim(update_id, seconds)
        return Claim(found)

    async def renew(self, update_id: int, seconds: float) -> None:
        """Extend our claim while the answer is still being made."""
        await self._quietly(self._if_ours, f"{self.prefix}update:{update_id}", self.owner, _ms(seconds))

    async def finish(self, update_id: int) -> None:
        """Mark the update done for a day (Telegram redelivers for at most that long)."""
        await self.local.finish(update_id)
        name = f"{self.prefix}update:{update_id}"
        # Without Redis a redelivery may be answered twice; it cannot be lost.
        with contextlib.suppress(StateUnavailable):
            await self._call(lambda: self.client.set(name, "done", ex=DONE_SECONDS))

    async def release(self, update_id: int) -> None:
        """Drop our claim so another replica can take the update at once."""
        await self.local.release(update_id)
        await self._quietly(self._if_ours, f"{self.prefix}update:{update_id}", self.owner)

    # --- locks ----------------------------------------------------------------------------------

    async def try_lock(self, name: str, seconds: float) -> str | None:
        """A lock across replicas (this replica's own while Redis is down)."""
        token = secrets.token_hex(8)
        try:
            taken = await self._call(
                lambda: self.client.set(f"{self.prefix}lock:{name}", token, px=_ms(seconds), nx=True)
            )
        except StateUnavailable:
            return await self.local.try_lock(name, seconds)
        return token if taken else None

    async def unlock(self, name: str, token: str) -> None:
        """Release the lock if it is still ours."""
        await self.local.unlock(name, token)
        await self._quietly(self._if_ours, f"{self.prefix}lock:{name}", token)

    async def _quietly(self, script: Any, key: str, *args: object) -> None:
        with contextlib.suppress(StateUnavailable):  # the claim or lock then expires by its TTL
            await self._call(lambda: script(keys=[key], args=list(args)))

    async def close(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()


class RedisLimiter:
    """The two token buckets of a scope, in Redis; this replica's own while Redis is down."""

    def __init__(self, state: RedisState, scope: str, per_user: int, overall: int) -> None:
        self.state = state
        self.scope = scope
        self.per_user, self.overall = per_user, overall
        self.local = state.local.limiter(scope, per_user, overall)

    async def check(self, user_id: int) -> Verdict:
        """Take one token from the user's bucket and the overall one, atomically."""
        base = f"{self.state.prefix}rate:{self.scope}:"
        keys = [f"{base}user:{user_id}", f"{base}all", f"{base}warned:{user_id}"]
        try:
            allowed, wait, everyone, warn = await self.state._call(
                lambda: self.state._buckets(keys=keys, args=[self.per_user, self.overall])
            )
        except StateUnavailable:
            return await self.local.check(user_id)
        if allowed:
            return Verdict(allowed=True)
        return Verdict(allowed=False, wait=float(wait), everyone=bool(everyone), warn=bool(warn))


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
