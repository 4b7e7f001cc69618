"""The bad-input and fault catalogue of docs/RELIABILITY.md, Telegram rows: floods, crowds, Bot API
failures, dropped polls, odd inline queries and buttons, /reindex under load, and the token in a real
process's output. Rows the Telegram tests already cover (stickers, 5000 characters, HTML, a 429 or a
502 on sendMessage, stale buttons...) are not repeated here.

The real Application runs against the fake Bot API on 127.0.0.1, with the engine over the fake
embedder (cheap enough for a hundred users). Every test ends the same way: every legitimate question
answered exactly once, nothing refused by Telegram, and the bot still answering.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web

from bot.config import Settings, TelegramSettings
from bot.engine import Engine
from bot.startup import open_engine
from bot.telegram.app import build_application, webhook_options
from tests.crash_runner import command
from tests.fake_bot_api import (
    ADMIN,
    ADMIN_PRIVATE,
    ALICE,
    BOB,
    BOB_PRIVATE,
    PRIVATE,
    TOKEN,
    BotThread,
    FakeBotApi,
)

pytestmark = pytest.mark.filterwarnings("ignore:Deprecated since version v22.2:DeprecationWarning")

PALANTIR = "What does Palantir run on?"
WALKOUT = "Did a spokesperson comment on the walkout?"
NEW_ARTICLE = """---
title: "Amazon staff walk out over Rekognition"
outlet: "The Test Gazette"
date: "2018-07-02"
---
Dozens of Amazon employees walked out of the Seattle headquarters on Monday. They said the company
should stop selling Rekognition to police departments. A spokesperson declined to comment on the walkout.
"""


class DroppingBotApi(FakeBotApi):
    """The fake Bot API, whose long polls can lose their connection just as they deliver updates.

    As on Telegram, updates are only confirmed by the next getUpdates offset, so a poll cut on its
    way back must lose nothing: the same updates come again with the next poll.
    """

    def __init__(self) -> None:
        super().__init__()
        self.polls_to_drop = 0
        self.dropped: list[int] = []  # update ids in polls that were cut

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        response = await super()._handle(request)
        if request.match_info["method"].lower() != "getupdates" or not self.polls_to_drop:
            return response
        assert isinstance(response, web.Response) and isinstance(response.body, bytes)
        updates = json.loads(response.body).get("result") or []
        if updates:
            self.polls_to_drop -= 1
            self.dropped += [u["update_id"] for u in updates]
            assert request.transport is not None
            request.transport.abort()  # the answer never reaches the bot
        return response


def private_chat(user_id: int) -> tuple[dict[str, Any], dict[str, Any]]:
    user = {"id": user_id, "is_bot": False, "first_name": f"User {user_id}"}
    return {"id": user_id, "type": "private", "first_name": user["first_name"]}, user


def squash(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def api() -> Iterator[DroppingBotApi]:
    with DroppingBotApi() as server:
        yield server


@pytest.fixture
def engine(built: Settings) -> Engine:
    return open_engine(built)


@pytest.fixture
def start_bot(api: FakeBotApi, built: Settings, engine: Engine) -> Iterator[Callable[..., BotThread]]:
    """Start the real Application on the fake server; stopped after the test."""
    started: list[BotThread] = []

    def start(webhook: bool = False, **overrides: Any) -> BotThread:
        values: dict[str, Any] = {
            "bot_token": TOKEN,
            "api_base_url": api.base_url,
            "admin_ids": {ADMIN["id"]},
        }
        tg = TelegramSettings(_env_file=None, **{**values, **overrides})  # type: ignore[call-arg]
        app = build_application(built, tg, engine=engine, backoff=0.05)
        runner = BotThread(app, webhook=webhook_options(tg) if webhook else None).start()
        started.append(runner)
        return runner

    yield start
    for runner in started:
        runner.stop()


def still_answering(api: FakeBotApi, bot: BotThread) -> None:
    """The bot is up: its thread lives and a fresh user's question gets an answer."""
    assert bot._thread.is_alive()
    chat, user = private_chat(999_999)
    mark = api.mark()
    api.send_text(PALANTIR, chat=chat, user=user)
    (reply,) = api.wait_for("sendMessage", lambda c: c.ok and c.chat_id == chat["id"], since=mark)
    assert "[1]" in reply.result["text"]


def answers_per_chat(api: FakeBotApi, since: int) -> Counter[int]:
    return Counter(c.chat_id for c in api.calls("sendMessage", since) if c.ok and c.chat_id is not None)


# --- load and abuse -----------------------------------------------------------------------------


def test_a_flood_from_one_user_gets_its_allowance_and_one_notice(
    api: FakeBotApi, start_bot: Callable[..., BotThread]
) -> None:
    bot = start_bot(rate_limit_per_minute=5)
    mark = api.mark()
    for n in range(60):
        api.send_text(f"{PALANTIR} ({n})")
    api.send_text(PALANTIR, chat=BOB_PRIVATE, user=BOB)
    api.wait_for("sendMessage", lambda c: c.ok and c.chat_id == BOB_PRIVATE["id"], since=mark)
    api.wait_for("sendMessage", lambda c: c.ok and c.chat_id == PRIVATE["id"], since=mark, count=6)
    bot.wait_idle(api)  # every update handled: anything more for the flood would have been sent
    alice = [squash(c.result["text"]) for c in api.sent_to(PRIVATE["id"], mark)]
    assert sum("faster than I can answer" in text for text in alice) == 1
    assert sum("[1]" in text for text in alice) == 5 and len(alice) == 6
    assert len(api.sent_to(BOB_PRIVATE["id"], mark)) == 1, "one user's flood does not starve another"
    assert api.rejected() == []
    still_answering(api, bot)


def test_a_hundred_users_at_once_each_get_exactly_one_answer(
    api: FakeBotApi, start_bot: Callable[..., BotThread]
) -> None:
    bot = start_bot()
    users = [private_chat(50_000 + n) for n in range(100)]
    mark = api.mark()
    for n, (chat, user) in enumerate(users):
        api.send_text(f"{PALANTIR} ({n})", chat=chat, user=user)
    ids = {chat["id"] for chat, _ in users}
    api.wait_for("sendMessage", lambda c: c.ok and c.chat_id in ids, since=mark, count=100, timeout=120)
    bot.wait_idle(api)
    sent = answers_per_chat(api, mark)
    assert {chat_id: sent[chat_id] for chat_id in ids} == dict.fromkeys(ids, 1)
    assert all("[1]" in c.result["text"] for c in api.calls("sendMessage", mark) if c.chat_id in ids)
    assert api.rejected() == []
    still_answering(api, bot)


# --- Bot API failures while polling -------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        {"status": 429, "retry_after": 1},
        {"status": 502},
        {"drop": True},
    ],
    ids=["429-retry-after", "502", "connection-dropped"],
)
def test_get_updates_failures_lose_and_repeat_nothing(
    api: FakeBotApi, start_bot: Callable[..., BotThread], failure: dict[str, Any]
) -> None:
    bot = start_bot()
    api.fail_next("getUpdates", times=2, **failure)
    mark = api.mark()
    api.send_text(PALANTIR)
    api.wait_for("sendMessage", lambda c: c.ok and c.chat_id == PRIVATE["id"], since=mark, timeout=60)
    bot.wait_idle(api)
    assert answers_per_chat(api, mark)[PRIVATE["id"]] == 1
    assert api.rejected() == []
    still_answering(api, bot)


def test_a_failed_poll_is_logged_as_one_warning_line_without_a_traceback(
    api: FakeBotApi, start_bot: Callable[..., BotThread], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="telegram.ext.Updater")
    start_bot()
    api.fail_next("getUpdates", times=2, status=502)
    mark = api.mark()
    api.send_text(PALANTIR)
    api.wait_for("sendMessage", lambda c: c.ok and c.chat_id == PRIVATE["id"], since=mark, timeout=60)
    polling = [r for r in caplog.records if r.name == "telegram.ext.Updater"]
    assert any("polling failed, retrying" in r.getMessage() for r in polling), polling
    assert all(r.exc_info is None and r.levelno == logging.WARNING for r in polling), polling


def test_a_connection_dropped_mid_poll_loses_and_repeats_nothing(
    api: DroppingBotApi, start_bot: Callable[..., BotThread]
) -> None:
    bot = start_bot()
    api.polls_to_drop = 2  # the polls that carry the questions are cut, twice
    mark = api.mark()
    api.send_text(PALANTIR)
    api.send_text(PALANTIR, chat=BOB_PRIVATE, user=BOB)
    for chat in (PRIVATE, BOB_PRIVATE):
        api.wait_for("sendMessage", lambda c, i=chat["id"]: c.ok and c.chat_id == i, since=mark, timeout=60)
    bot.wait_idle(api)
    assert api.dropped, "no poll was cut: the test did not test anything"
    sent = answers_per_chat(api, mark)
    assert (sent[PRIVATE["id"]], sent[BOB_PRIVATE["id"]]) == (1, 1)
    assert api.rejected() == []
    still_answering(api, bot)


# --- inline queries and buttons -----------------------------------------------------------------


def test_an_inline_query_of_256_characters_is_answered(
    api: FakeBotApi, start_bot: Callable[..., BotThread]
) -> None:
    bot = start_bot()
    query = (PALANTIR + " And who built it for ICE? ") * 6
    query = query[:256]  # Telegram's limit for an inline query
    assert len(query) == 256
    query_id = api.inline_query(query)
    (call,) = api.wait_for("answerInlineQuery", lambda c: c.params["inline_query_id"] == query_id)
    assert call.ok and call.params["results"]
    assert all(len(r["title"]) <= 100 for r in call.params["results"])
    assert api.rejected() == []
    still_answering(api, bot)


FORGED = [
    "x:-1",
    "x:0:0",
    "x:1000",
    "m:",
    ":",
    "v:key:up:extra",
    "v::up",
    "é" * 32,
    "\x00",
    "m:" + "A" * 62,
    '{"action": "reindex"}',
    "/reindex",
]


def test_forged_and_stale_buttons_are_answered_and_change_nothing(
    api: FakeBotApi, start_bot: Callable[..., BotThread]
) -> None:
    bot = start_bot()
    mark = api.mark()
    api.send_text(PALANTIR)
    (answer,) = api.wait_for("sendMessage", lambda c: c.ok and c.chat_id == PRIVATE["id"], since=mark)
    buttons = {
        b["text"]: b["callback_data"] for row in answer.result["reply_markup"]["inline_keyboard"] for b in row
    }
    key = buttons["More"].split(":")[1]
    forged = [*FORGED, f"v:{key}:sideways", f"m:{key}x", f"m:{key.lower()}{key.upper()}"[:64]]
    mark = api.mark()
    queries = [api.press(answer.result, data) for data in forged]
    api.wait_for("answerCallbackQuery", since=mark, count=len(queries))
    for data, query_id in zip(forged, queries, strict=True):
        text = (api.query_answer(query_id) or {}).get("text", "")
        assert "don't know that button" in text or "too old" in text, (data, text)
    assert api.sent_to(PRIVATE["id"], mark) == [], "no forged button made the bot send anything"
    assert api.calls("editMessageText", mark) == [] and api.calls("editMessageReplyMarkup", mark) == []
    assert api.rejected() == []
    still_answering(api, bot)


def _press_more_twice(api: FakeBotApi, bot: BotThread) -> list[str]:
    """Ask, then tap the answer's More button twice in a row; the citation numbers sent after the taps."""
    mark = api.mark()
    api.send_text(PALANTIR)
    (answer,) = api.wait_for("sendMessage", lambda c: c.ok and c.chat_id == PRIVATE["id"], since=mark)
    keyboard = answer.result["reply_markup"]["inline_keyboard"]
    more = next(b["callback_data"] for row in keyboard for b in row if b["text"] == "More")
    mark = api.mark()
    first, second = api.press(answer.result, more), api.press(answer.result, more)
    api.wait_for("answerCallbackQuery", since=mark, count=2)
    bot.wait_idle(api)
    assert api.query_answer(first) is not None and api.query_answer(second) is not None
    return [n for c in api.sent_to(PRIVATE["id"], mark) for n in re.findall(r"\[(\d+)\]", c.result["text"])]


def test_more_tapped_twice_never_shows_a_citation_twice(
    api: FakeBotApi, start_bot: Callable[..., BotThread]
) -> None:
    bot = start_bot()
    shown = _press_more_twice(api, bot)
    assert "4" in shown and len(shown) == len(set(shown)), shown
    still_answering(api, bot)


def test_more_tapped_twice_makes_no_request_telegram_refuses(
    api: FakeBotApi, start_bot: Callable[..., BotThread]
) -> None:
    bot = start_bot()
    _press_more_twice(api, bot)
    assert api.rejected() == []


# --- /reindex while questions stream in ---------------------------------------------------------


def test_reindex_while_questions_stream_in_answers_each_from_the_old_or_the_new_index(
    api: FakeBotApi, start_bot: Callable[..., BotThread], built: Settings, engine: Engine
) -> None:
    questions = [WALKOUT, PALANTIR]
    old = {q: [c.quote for c in engine.answer(q, 9).citations[:3]] for q in questions}
    bot = start_bot(rate_limit_global_per_minute=1000)
    (built.corpus / "005_walkout.md").write_text(NEW_ARTICLE, encoding="utf-8")
    users = [private_chat(60_000 + n) for n in range(60)]
    asked: dict[int, str] = {}
    mark = api.mark()
    first = {chat["id"] for chat, _ in users[:20]}
    for n, (chat, user) in enumerate(users[:40]):
        if n == 20:  # some answers are out (from the old index), others still in the engine
            api.wait_for("sendMessage", lambda c: c.ok and c.chat_id in first, since=mark, count=3)
            api.send_text("/reindex", chat=ADMIN_PRIVATE, user=ADMIN)
        asked[chat["id"]] = questions[n % 2]
        api.send_text(asked[chat["id"]], chat=chat, user=user)
        time.sleep(0.02)
    (done,) = api.wait_for(
        "editMessageText", lambda c: c.ok and c.chat_id == ADMIN["id"], since=mark, timeout=60
    )
    assert "6 articles" in done.result["text"], done.result["text"]
    late = {chat["id"] for chat, _ in users[40:]}  # asked once the new index is in
    for n, (chat, user) in enumerate(users[40:]):
        asked[chat["id"]] = questions[n % 2]
        api.send_text(asked[chat["id"]], chat=chat, user=user)
    ids = set(asked)
    api.wait_for("sendMessage", lambda c: c.ok and c.chat_id in ids, since=mark, count=len(ids), timeout=120)
    bot.wait_idle(api)

    new_engine = open_engine(built)
    new = {q: [c.quote for c in new_engine.answer(q, 9).citations[:3]] for q in questions}
    assert old[WALKOUT] != new[WALKOUT], "precondition: the new article changes the answer"
    sent = answers_per_chat(api, mark)
    assert {i: sent[i] for i in ids} == dict.fromkeys(ids, 1), "each question answered exactly once"
    source: Counter[str] = Counter()
    for call in api.calls("sendMessage", mark):
        if call.chat_id not in ids:
            continue
        text, question = squash(call.result["text"]), asked[call.chat_id]
        from_old = all(squash(q) in text for q in old[question])
        from_new = all(squash(q) in text for q in new[question])
        assert from_old or from_new, f"an answer from neither index: {text[:200]}"
        if call.chat_id in late and question == WALKOUT:
            assert from_new, "a question asked after the swap was answered from the old index"
        source["old" if from_old and not from_new else "new" if from_new and not from_old else "both"] += 1
    assert source["old"] and source["new"], f"the stream did not straddle the swap: {source}"
    assert "something went wrong" not in " ".join(c.result["text"] for c in api.sent_to(ADMIN["id"], mark))
    assert api.rejected() == []
    still_answering(api, bot)


# --- security -----------------------------------------------------------------------------------


def test_without_admin_ids_nobody_may_reindex(api: FakeBotApi, start_bot: Callable[..., BotThread]) -> None:
    bot = start_bot(admin_ids=set())
    for chat, user in [(PRIVATE, ALICE), (ADMIN_PRIVATE, ADMIN), private_chat(0)]:
        mark = api.mark()
        api.send_text("/reindex", chat=chat, user=user)
        (reply,) = api.wait_for("sendMessage", lambda c, i=chat["id"]: c.chat_id == i, since=mark)
        assert "only the bot's admins" in reply.result["text"]
        assert api.calls("editMessageText", mark) == []
    assert api.rejected() == []
    still_answering(api, bot)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_webhook_without_a_configured_secret_still_refuses_requests_without_one(
    api: FakeBotApi, start_bot: Callable[..., BotThread]
) -> None:
    port = _free_port()
    bot = start_bot(
        webhook=True,
        webhook_url="https://bot.example.org/hook",
        webhook_listen="127.0.0.1",
        webhook_port=port,
    )
    secret = (api.webhook or {}).get("secret_token")
    assert secret and len(secret) >= 32, "a random secret is registered with Telegram"
    update = json.dumps(api.take_update("message", api.message(PALANTIR))).encode()
    url = f"http://127.0.0.1:{port}/hook"
    plain = {"Content-Type": "application/json"}
    mark = api.mark()
    assert _post(url, update, plain) == 403
    assert _post(url, update, {**plain, "X-Telegram-Bot-Api-Secret-Token": ""}) == 403
    assert _post(url, update, {**plain, "X-Telegram-Bot-Api-Secret-Token": secret[:-1]}) == 403
    bot.wait_idle(api)
    assert api.sent_to(PRIVATE["id"], mark) == [], "a refused update is not answered"
    assert _post(url, update, {**plain, "X-Telegram-Bot-Api-Secret-Token": secret}) == 200
    api.wait_for("sendMessage", lambda c: c.ok and c.chat_id == PRIVATE["id"], since=mark)


def test_the_token_is_in_no_output_of_a_verbose_run_with_failures(built: Settings, api: FakeBotApi) -> None:
    """The real process, at DEBUG, through 429s, 5xx, dropped connections and a handler's traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEGRAM_")}
    env |= {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE_URL": api.base_url, "TELEGRAM_ADMIN_IDS": "4242"}
    api.fail_next("getUpdates", status=502)
    api.fail_next("getUpdates", drop=True)
    process = subprocess.Popen(
        command(built.corpus, built.index, "--verbose", "telegram"),
        cwd=built.corpus.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        api.wait_for("setMyCommands", timeout=60)
        api.fail_next("sendMessage", status=429, retry_after=1)
        api.fail_next("sendMessage", status=502)
        api.fail_next("sendMessage", drop=True)
        mark = api.mark()
        api.send_text(PALANTIR)
        api.wait_for("sendMessage", lambda c: c.ok, since=mark, timeout=60)
        api.fail_next("sendMessage", status=400, description="Bad Request: chat not found")  # a traceback
        mark = api.mark()
        api.send_text(PALANTIR, chat=BOB_PRIVATE, user=BOB)
        api.wait_for("sendMessage", lambda c: c.ok and c.chat_id == BOB_PRIVATE["id"], since=mark, timeout=60)
        api.inline_query(PALANTIR)
        api.wait_for("answerInlineQuery", timeout=60)
        api.send_text("/reindex", chat=ADMIN_PRIVATE, user=ADMIN)
        api.wait_for("editMessageText", timeout=60)
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    text = output.decode("utf-8", "replace")
    secret = TOKEN.split(":", 1)[1]
    for form in (TOKEN, quote(TOKEN, safe=""), secret):
        assert form not in text
    assert "Traceback" in text and "DEBUG" in text, "the run did log verbosely, tracebacks included"
    assert "chat not found" in text.lower(), "the handler's failure was logged"
    assert "<redacted>" in text, "the Bot API URL was logged, redacted"
    assert process.returncode == 0
