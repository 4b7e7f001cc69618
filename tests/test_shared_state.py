"""The shared state behind one interface, in memory and in a real Redis: rate limits, answers behind
buttons, follow-ups, webhook update claims and locks; then what two replicas (two clients of one
Redis) see together, and what happens while Redis is down."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot import redis_state
from bot.config import Settings, StateSettings, load_settings
from bot.errors import BadInputError
from bot.models import Answer, AnswerSpan, Citation, Source
from bot.redis_state import RedisState, redacted_url
from bot.shared_state import (
    ANSWER_SECONDS,
    CONVERSATION_SECONDS,
    Claim,
    MemoryState,
    SharedState,
    StateUnavailable,
    decode_shown,
    encode_shown,
    open_state,
)
from bot.telegram.state import Shown
from tests.redis_server import NEEDS_REDIS, REDIS_SERVER, RedisServer


def run(coroutine: Awaitable[Any]) -> Any:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


def answer(question: str = "Who signed?", citations: int = 7) -> Answer:
    source = Source("a1", "Title", "Outlet", "2018-06-22", "https://example.org/a", "corpus/a.md", "Title")
    cited = tuple(
        Citation(n, f"passage {n}", f"quote {n}", 0.5 + n / 100, (source,), f"p{n}")
        for n in range(1, citations + 1)
    )
    notes = ("3,100 in [1], 4,000 in [2]",)
    # `related` filled too (an answer has it only when declined): every field must round-trip.
    return Answer(question, False, "quote 1 [1]", cited, notes, question, AnswerSpan(1, "450"), cited[:2])


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server; .ci/run does)")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def fresh_redis(redis_server: RedisServer) -> RedisServer:
    """The module's server, emptied."""
    import redis

    redis.Redis.from_url(redis_server.url).flushall()
    return redis_server


# The Redis variant starts redis-server through `getfixturevalue`, which tests/conftest.py cannot
# see: it is marked slow here, so the fast lane stays free of subprocesses.
@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.slow(reason="a subprocess"))])
def make_state(request: pytest.FixtureRequest) -> Callable[[], SharedState]:
    """A factory of states: each call a new client of the same store (two replicas, for Redis)."""
    if request.param == "memory":
        memory = MemoryState()
        return lambda: memory
    server = request.getfixturevalue("fresh_redis")
    return lambda: RedisState(server.url)


# --- one interface, both back ends --------------------------------------------------------------


def test_a_user_gets_a_burst_then_is_told_once_to_wait(make_state: Callable[[], SharedState]) -> None:
    async def scenario() -> list[Any]:
        limiter = make_state().limiter("tg", per_user=3, overall=100)
        verdicts = [await limiter.check(7) for _ in range(5)]
        other = await limiter.check(8)
        return [*verdicts, other]

    *mine, other = run(scenario())
    assert [v.allowed for v in mine] == [True, True, True, False, False]
    assert mine[3].warn and not mine[4].warn, "told once per wait"
    assert 19.0 < mine[3].wait <= 20.0 and not mine[3].everyone
    assert other.allowed, "another user has a bucket of their own"


def test_the_overall_limit_covers_everyone(make_state: Callable[[], SharedState]) -> None:
    async def scenario() -> list[Any]:
        limiter = make_state().limiter("tg", per_user=10, overall=2)
        return [await limiter.check(user) for user in (1, 2, 3)]

    first, second, third = run(scenario())
    assert first.allowed and second.allowed
    assert not third.allowed and third.everyone and 29.0 < third.wait <= 30.0


def test_scopes_have_limits_of_their_own(make_state: Callable[[], SharedState]) -> None:
    async def scenario() -> tuple[bool, bool]:
        state = make_state()
        await state.limiter("tg", 1, 100).check(1)
        return (await state.limiter("tg", 1, 100).check(1)).allowed, (
            await state.limiter("api", 1, 100).check(1)
        ).allowed

    assert run(scenario()) == (False, True)


def test_answers_round_trip_and_pages_are_kept(make_state: Callable[[], SharedState]) -> None:
    async def scenario() -> tuple[Any, Any, Shown | None, Shown | None]:
        state = make_state()
        shown = Shown(answer())
        shown.next_page(3)
        key = await state.add_answer(shown)
        fetched = await make_state().get_answer(key)
        assert fetched is not None
        first = (fetched.answer, set(fetched.shown))  # memory hands out the live object
        paged = await make_state().update_answer(key, lambda s: s.next_page(3))
        again = await make_state().get_answer(key)
        return first, paged, again, await state.get_answer("no-such-key")

    (fetched, shown), paged, again, unknown = run(scenario())
    assert fetched == answer() and shown == {1, 2, 3}
    _, (page, _notes) = paged
    assert [c.n for c in page] == [4, 5, 6]
    assert again is not None and again.shown == {1, 2, 3, 4, 5, 6}
    assert unknown is None


def test_follow_up_context_is_per_chat(make_state: Callable[[], SharedState]) -> None:
    async def scenario() -> tuple[Answer | None, Answer | None]:
        await make_state().remember(1, answer("first"))
        await make_state().remember(1, answer("second"))
        return await make_state().last_answer(1), await make_state().last_answer(2)

    mine, theirs = run(scenario())
    assert mine == answer("second") and theirs is None


def test_update_claims_fresh_busy_done_and_expired(make_state: Callable[[], SharedState]) -> None:
    async def scenario() -> list[Claim]:
        one, two = make_state(), make_state()
        seen = [await one.claim(1, 30), await two.claim(1, 30)]
        await one.finish(1)
        seen.append(await two.claim(1, 30))
        seen.append(await one.claim(2, 0.2))
        deadline = time.monotonic() + 10
        while (claim := await two.claim(2, 30)) is Claim.BUSY and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # waiting for the claim's TTL to run out, bounded
        seen.append(claim)
        await one.claim(3, 30)
        await one.release(3)
        seen.append(await two.claim(3, 30))
        return seen

    assert run(scenario()) == [Claim.FRESH, Claim.BUSY, Claim.DONE, Claim.FRESH, Claim.FRESH, Claim.FRESH]


def test_a_renewed_claim_outlives_its_first_ttl(make_state: Callable[[], SharedState]) -> None:
    async def scenario() -> Claim:
        one, two = make_state(), make_state()
        # Renewed every 0.05 s for 1.2 s, twice the first TTL; a renewal may come up to 0.55 s
        # late (a stalled shared machine) before the claim lapses.
        await one.claim(5, 0.6)
        for _ in range(24):
            await asyncio.sleep(0.05)
            await one.renew(5, 0.6)
        return await two.claim(5, 0.6)

    assert run(scenario()) is Claim.BUSY


def test_a_lock_is_held_by_one_at_a_time(make_state: Callable[[], SharedState]) -> None:
    async def scenario() -> tuple[str | None, str | None, str | None, str | None]:
        one, two = make_state(), make_state()
        token = await one.try_lock("reindex", 60)
        refused = await two.try_lock("reindex", 60)
        assert token is not None
        await two.unlock("reindex", "not-the-token")
        still_held = await two.try_lock("reindex", 60)  # someone else's token unlocks nothing
        await one.unlock("reindex", token)
        return token, refused, still_held, await two.try_lock("reindex", 60)

    token, refused, still_held, after = run(scenario())
    assert token and refused is None and still_held is None and after


def test_shown_survives_json_with_votes_and_dropped_buttons() -> None:
    shown = Shown(answer(), shown={1, 2}, notes_shown={0}, votes={1001: "up"}, more_dropped={42})
    assert decode_shown(encode_shown(shown)) == shown


# --- Redis: two replicas at once ----------------------------------------------------------------


@NEEDS_REDIS
def test_limits_are_atomic_across_two_clients(fresh_redis: RedisServer) -> None:
    async def scenario() -> int:
        limiters = [RedisState(fresh_redis.url).limiter("tg", 10, 1000) for _ in range(2)]
        verdicts = await asyncio.gather(*(limiters[i % 2].check(9) for i in range(40)))
        return sum(v.allowed for v in verdicts)

    assert run(scenario()) == 10


@NEEDS_REDIS
def test_two_replicas_tapping_more_at_once_get_different_pages(fresh_redis: RedisServer) -> None:
    async def scenario() -> list[list[int]]:
        one, two = RedisState(fresh_redis.url), RedisState(fresh_redis.url)
        key = await one.add_answer(Shown(answer(citations=12)))
        results = await asyncio.gather(
            *(state.update_answer(key, lambda s: s.next_page(3)) for state in (one, two, one, two))
        )
        return [[c.n for c in page] for _, (page, _notes) in results]

    pages = run(scenario())
    assert sorted(n for page in pages for n in page) == list(range(1, 13)), pages


@NEEDS_REDIS
def test_keys_carry_their_ttls(fresh_redis: RedisServer) -> None:
    import redis

    async def scenario() -> str:
        state = RedisState(fresh_redis.url)
        await state.remember(5, answer())
        await state.limiter("tg", 20, 100).check(5)
        return await state.add_answer(Shown(answer()))

    key = run(scenario())
    client = redis.Redis.from_url(fresh_redis.url)
    assert ANSWER_SECONDS - 5 < client.ttl(f"protest-bot:answer:{key}") <= ANSWER_SECONDS
    assert CONVERSATION_SECONDS - 5 < client.ttl("protest-bot:chat:5") <= CONVERSATION_SECONDS
    assert 0 < client.pttl("protest-bot:rate:tg:user:5") <= 4000, "one token short: full again in 3 s"


# --- Redis down, then back ----------------------------------------------------------------------


@NEEDS_REDIS
def test_while_redis_is_down_limits_are_local_and_one_line_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.redis_state")
    server = RedisServer(tmp_path / "redis").start()

    async def scenario() -> tuple[list[bool], Any, list[bool]]:
        state = RedisState(server.url, timeout=0.2)
        limiter = state.limiter("tg", 2, 100)
        key = await state.add_answer(Shown(answer()))
        server.stop()
        down = [(await limiter.check(1)).allowed for _ in range(3)]
        try:
            await state.get_answer(key)
            lost: Any = "fetched"
        except StateUnavailable:
            lost = "unavailable"
        local_key = await state.add_answer(Shown(answer("while down")))
        local = await state.get_answer(local_key)
        server.start()
        deadline = time.monotonic() + 10
        while not (await limiter.check(2)).allowed or state.down:
            assert time.monotonic() < deadline, "Redis was not used again within 10 s"
            await asyncio.sleep(0.1)  # the retry interval, bounded by the deadline
        up = [(await limiter.check(3)).allowed for _ in range(3)]
        # Shared again, not this replica's own: another client finds user 3's bucket empty too.
        other = RedisState(server.url, timeout=0.2)
        up.append((await other.limiter("tg", 2, 100).check(3)).allowed)
        await other.close()
        await state.close()
        return down, (lost, local), up

    try:
        down, (lost, local), up = run(scenario())
    finally:
        server.stop()
    assert down == [True, True, False], "the local buckets limit meanwhile"
    assert lost == "unavailable" and local is not None and local.answer.question == "while down"
    assert up == [True, True, False, False], "shared limits resume"
    messages = [r.getMessage() for r in caplog.records]
    assert sum("lost Redis" in m for m in messages) == 1, messages
    assert sum("is back" in m for m in messages) == 1, messages
    assert not any(r.exc_info for r in caplog.records), "no traceback"


def test_a_redis_url_without_redis_py_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_state, "aioredis", None)
    with pytest.raises(BadInputError, match=r"redis-py is not installed: pip install 'protest-bot\[redis\]'"):
        open_state("redis://127.0.0.1:1/0")


def test_redis_urls_are_checked_and_passwords_kept_out_of_messages() -> None:
    assert redacted_url("redis://:hunter2-secret@cache:6379/0") == "redis://:***@cache:6379/0"
    assert redacted_url("redis://bot:hunter2-secret@cache/0") == "redis://bot:***@cache/0"
    assert redacted_url("redis://cache:6379") == "redis://cache:6379"
    with pytest.raises(BadInputError, match="redis_url"):
        load_settings(StateSettings, redis_url="http://cache:6379")
    assert load_settings(StateSettings, redis_url="  ").redis_url is None
    assert isinstance(open_state(None), MemoryState)
    with pytest.raises(BadInputError, match=r"accepts: redis://:\*\*\*@cache:port/0$") as refused:
        open_state("redis://:hunter2-secret@cache:port/0")
    assert "hunter2" not in str(refused.value)


@NEEDS_REDIS
def test_two_serve_replicas_share_one_rate_limit(fresh_redis: RedisServer, built: Settings) -> None:
    from fastapi.testclient import TestClient

    from bot.api import create_app
    from bot.config import ServeSettings

    serve = ServeSettings(_env_file=None, api_rate_limit_per_minute=2)  # type: ignore[call-arg]
    apps = [create_app(built, serve, shared=RedisState(fresh_redis.url)) for _ in range(2)]
    with TestClient(apps[0]) as one, TestClient(apps[1]) as two:
        # No engine is loading: an allowed request gets 503, a limited one 429 (checked first).
        statuses = [client.get("/sources").status_code for client in (one, two, one, two)]
    assert statuses == [503, 503, 429, 429]


@NEEDS_REDIS
def test_a_redis_that_stops_answering_costs_a_timeout_once_not_per_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal

    caplog.set_level(logging.WARNING, logger="bot.redis_state")
    monkeypatch.setattr(redis_state, "RETRY_DOWN_SECONDS", 3600.0)  # no retry until the test allows it
    server = RedisServer(tmp_path / "redis").start()
    process = server.process
    assert process is not None

    async def scenario() -> tuple[list[bool], int]:
        state = RedisState(server.url, timeout=0.2)
        limiter = state.limiter("tg", 100, 1000)
        await limiter.check(1)
        tried: list[int] = []
        buckets = state._buckets

        async def counted(**kwargs: Any) -> Any:
            tried.append(1)
            return await buckets(**kwargs)

        state._buckets = counted  # type: ignore[assignment]
        process.send_signal(signal.SIGSTOP)  # a Redis that hangs: connected, silent
        try:
            answered = [(await limiter.check(1)).allowed for _ in range(20)]
        finally:
            process.send_signal(signal.SIGCONT)
        attempts = len(tried)
        state._retry_at = 0.0  # now let it try again
        assert (await limiter.check(2)).allowed and not state.down
        await state.close()
        return answered, attempts

    try:
        answered, attempts = run(scenario())
    finally:
        server.stop()
    assert answered == [True] * 20, "answered from local limits meanwhile"
    assert attempts == 1, "one timeout, then Redis is skipped until the retry interval"
    messages = [r.getMessage() for r in caplog.records]
    assert sum("lost Redis" in m and "TimeoutError" in m for m in messages) == 1, messages
    assert sum("is back" in m for m in messages) == 1, messages
