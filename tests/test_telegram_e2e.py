"""The real Application, polling a fake Bot API over real HTTP on 127.0.0.1, answering with the real engine.

Every test ends by checking that the fake refused nothing: each reply is one Telegram would accept.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bot.config import Settings, TelegramSettings
from bot.engine import Engine
from bot.startup import open_engine
from bot.telegram.app import build_application, webhook_options
from bot.telegram.chat import EXAMPLES
from bot.telegram.state import Shown
from tests.fake_bot_api import (
    ADMIN,
    ADMIN_PRIVATE,
    ALICE,
    BOB,
    BOB_PRIVATE,
    GROUP,
    PRIVATE,
    TOKEN,
    BotThread,
    Call,
    FakeBotApi,
    update_json,
)

# PTB itself warns when it builds a RetryAfter (its int → timedelta migration); nothing of ours.
pytestmark = pytest.mark.filterwarnings("ignore:Deprecated since version v22.2:DeprecationWarning")

PALANTIR = "What does Palantir run on?"
NEW_ARTICLE = """---
title: "Amazon staff walk out over Rekognition"
outlet: "The Test Gazette"
author:
date: "2018-07-02"
url: "https://example.org/walkout"
---
Dozens of Amazon employees walked out of the Seattle headquarters on Monday. They said the company
should stop selling Rekognition to police departments. A spokesperson declined to comment on the walkout.
"""
BEZOS = "Who wrote to Jeff Bezos?"


def squash(text: str) -> str:
    return " ".join(text.split())


def buttons(message: dict[str, Any]) -> dict[str, str]:
    """Button text → callback_data of a sent message."""
    rows = message.get("reply_markup", {}).get("inline_keyboard", [])
    return {b["text"]: b["callback_data"] for row in rows for b in row if "callback_data" in b}


def entity_types(call: Call) -> list[str]:
    return [e["type"] for e in call.result.get("entities", [])]


def tg_settings(api: FakeBotApi, **overrides: Any) -> TelegramSettings:
    values: dict[str, Any] = {"bot_token": TOKEN, "api_base_url": api.base_url, "admin_ids": {ADMIN["id"]}}
    return TelegramSettings(_env_file=None, **{**values, **overrides})  # type: ignore[call-arg]


@pytest.fixture
def api() -> Iterator[FakeBotApi]:
    with FakeBotApi() as server:
        yield server


@pytest.fixture
def start_bot(
    api: FakeBotApi, real_settings: Settings, real_engine: Engine
) -> Iterator[Callable[..., BotThread]]:
    """Start a bot on the fake server (the real engine unless told otherwise); stopped after the test."""
    started: list[BotThread] = []

    def start(
        settings: Settings = real_settings, engine: Engine = real_engine, webhook: bool = False, **tg: Any
    ) -> BotThread:
        telegram = tg_settings(api, **tg)
        app = build_application(settings, telegram, engine=engine, backoff=0.05)
        runner = BotThread(app, webhook=webhook_options(telegram) if webhook else None).start()
        started.append(runner)
        return runner

    yield start
    for runner in started:
        runner.stop()


@pytest.fixture
def bot(start_bot: Callable[..., BotThread]) -> BotThread:
    return start_bot()


def reply_to(api: FakeBotApi, chat: dict[str, Any], since: int, count: int = 1) -> list[Call]:
    return api.wait_for("sendMessage", lambda c: c.chat_id == chat["id"], since=since, count=count)


def settle(api: FakeBotApi, bot: BotThread, chat: dict[str, Any], user: dict[str, Any] = ALICE) -> None:
    """Send /help and wait for its reply, then until every update is handled: a reply to an update
    sent before would have been sent by then."""
    mark = api.mark()
    api.send_text("/help", chat=chat, user=user)
    api.wait_for(
        "sendMessage", lambda c: c.chat_id == chat["id"] and "How to ask" in c.result["text"], since=mark
    )
    bot.wait_idle(api)


# --- start-up -----------------------------------------------------------------------------------


def test_start_up_publishes_commands_and_polls(api: FakeBotApi, bot: BotThread) -> None:
    assert [c["command"] for c in api.commands or []] == ["start", "ask", "sources", "help"]
    assert api.calls("deleteWebhook"), "polling starts by removing any webhook"
    deadline = time.monotonic() + 10
    while api.allowed_updates is None and time.monotonic() < deadline:  # set when a long poll begins
        time.sleep(0.02)
    # The harness asks for every kind of update, so the handlers' own filters are what is tested.
    assert {"message", "edited_message", "inline_query", "callback_query"} <= set(api.allowed_updates or [])
    assert api.rejected() == []


# --- conversations ------------------------------------------------------------------------------


def test_private_question_gets_cited_quoted_html(
    api: FakeBotApi, bot: BotThread, real_engine: Engine
) -> None:
    expected = real_engine.answer(BEZOS, 9)
    assert not expected.abstained
    mark = api.mark()
    api.send_text(BEZOS)
    (reply,) = reply_to(api, PRIVATE, mark)
    assert reply.ok and reply.params["parse_mode"] == "HTML"
    text = squash(reply.result["text"])
    shown = expected.citations[:3]
    for citation in shown:
        assert f"[{citation.n}]" in text
        assert squash(citation.quote) in text
    assert entity_types(reply).count("blockquote") == len(shown), "each answering sentence is quoted"
    assert "Bezos" in text
    assert "reply_parameters" not in reply.params, "in private the answer does not quote the question"
    keyboard = buttons(reply.result)
    assert {"👍", "👎"} <= keyboard.keys()
    assert ("More" in keyboard) == (len(expected.citations) > 3)
    typing = [c for c in api.calls("sendChatAction", mark) if c.chat_id == PRIVATE["id"]]
    assert typing and typing[0].params["action"] == "typing" and typing[0].at <= reply.at
    assert api.rejected() == []


def test_a_private_follow_up_is_read_with_the_question_before(api: FakeBotApi, bot: BotThread) -> None:
    mark = api.mark()
    api.send_text("Who wrote a letter to Jeff Bezos?")
    reply_to(api, PRIVATE, mark)
    mark = api.mark()
    api.send_text("How many signed it?")
    (reply,) = reply_to(api, PRIVATE, mark)
    assert "450" in reply.result["text"]
    assert api.rejected() == []


def test_group_answers_ask_mentions_and_replies_and_ignores_chatter(api: FakeBotApi, bot: BotThread) -> None:
    mark = api.mark()
    ask = api.send_text(f"/ask@protest_test_bot {PALANTIR}", chat=GROUP, user=ALICE)
    chatter = api.send_text("lunch anyone? Palantir is a board game, right?", chat=GROUP, user=BOB)
    mention = api.send_text("@protest_test_bot why did the workers mention IBM?", chat=GROUP, user=BOB)
    sticker = api.send_sticker(chat=GROUP, user=BOB)
    first, _ = reply_to(api, GROUP, mark, count=2)
    follow_up = api.send_text("Who wrote the letter?", chat=GROUP, user=BOB, reply_to=first.result)
    reply_to(api, GROUP, mark, count=3)
    settle(api, bot, GROUP)

    sent = api.sent_to(GROUP["id"], mark)
    answered = {c.params["reply_parameters"]["message_id"] for c in sent}
    assert answered >= {ask["message_id"], mention["message_id"], follow_up["message_id"]}
    assert chatter["message_id"] not in answered and sticker["message_id"] not in answered
    assert len(sent) == 4, "three questions and the /help used to settle; nothing for chatter or the sticker"
    by_question = {c.params["reply_parameters"]["message_id"]: squash(c.result["text"]) for c in sent}
    assert "Palantir" in by_question[ask["message_id"]]
    assert "IBM" in by_question[mention["message_id"]]
    assert api.rejected() == []


def test_group_ask_without_a_question_explains_itself(api: FakeBotApi, bot: BotThread) -> None:
    mark = api.mark()
    api.send_text("/ask", chat=GROUP)
    (reply,) = reply_to(api, GROUP, mark)
    assert "/ask Who did" in reply.result["text"]
    assert api.rejected() == []


# --- odd input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("send", "expected"),
    [
        (lambda api: api.send_sticker(), "only read questions written in words"),
        (lambda api: api.send_photo(), "only read questions written in words"),
        (lambda api: api.send_photo(caption="Who wrote the letter?"), "only read questions written in words"),
        (lambda api: api.send_voice(), "only read questions written in words"),
        (lambda api: api.send_text("🔥🔥🤔 !!"), "only read questions written in words"),
        (lambda api: api.send_text("Why? " * 999 + "Why?!"), "too long (5000 characters; the limit is 1000)"),
        (lambda api: api.send_text("/frobnicate now"), "don't know that command"),
    ],
    ids=[
        "sticker",
        "photo",
        "photo-with-caption",
        "voice",
        "emoji-only",
        "5000-characters",
        "unknown-command",
    ],
)
def test_odd_private_input_gets_a_short_friendly_reply(
    api: FakeBotApi, bot: BotThread, send: Callable[[FakeBotApi], Any], expected: str
) -> None:
    mark = api.mark()
    send(api)
    (reply,) = reply_to(api, PRIVATE, mark)
    assert expected in reply.result["text"]
    assert utf16(reply.params["text"]) < 300, "a short reply, never the input echoed back"
    assert api.rejected() == []


@pytest.mark.parametrize(
    "text",
    [
        "<b>What</b> does <i>Palantir</i> run on? <script>alert(1)</script> & </b> <a href='x'>",
        "*What* does _Palantir_ run on? `code` [link](http://x) ||spoiler||",
        "Palantir &amp; AWS &lt;tags&gt; &#60;b&#62; < > &",
    ],
    ids=["html", "markdown", "entities"],
)
def test_html_and_markdown_looking_questions_get_accepted_replies(
    api: FakeBotApi, bot: BotThread, text: str
) -> None:
    mark = api.mark()
    api.send_text(text)
    (reply,) = reply_to(api, PRIVATE, mark)
    assert reply.ok
    assert api.rejected() == []


def test_edited_messages_are_ignored(api: FakeBotApi, bot: BotThread) -> None:
    question = api.message("What does Palantr run on?")  # never delivered as new: only its edit is
    mark = api.mark()
    api.edit(question, PALANTIR)
    settle(api, bot, PRIVATE)
    assert len(api.sent_to(PRIVATE["id"], mark)) == 1, "only /help was answered"
    assert api.rejected() == []


# --- inline mode --------------------------------------------------------------------------------


def test_inline_query_returns_one_valid_card_per_citation(
    api: FakeBotApi, bot: BotThread, real_engine: Engine
) -> None:
    expected = real_engine.answer(PALANTIR, 9)
    query_id = api.inline_query(PALANTIR)
    (call,) = api.wait_for("answerInlineQuery", lambda c: c.params["inline_query_id"] == query_id)
    assert call.ok
    results = call.params["results"]
    assert len(results) == len(expected.citations) and 1 <= len(results) <= 50
    assert len({r["id"] for r in results}) == len(results)
    assert all(len(r["id"].encode()) <= 64 for r in results)
    messages = [squash(r["input_message_content"]["message_text"]) for r in results]
    for citation, message in zip(expected.citations, messages, strict=True):
        assert f"[{citation.n}]" in message and PALANTIR in message
    assert any("Palantir" in squash(r["description"]) for r in results)
    assert api.rejected() == []


def test_inline_query_echoes_html_looking_questions_escaped(api: FakeBotApi, bot: BotThread) -> None:
    query_id = api.inline_query("<b>Palantir</b> & AWS: what runs on what?")
    (call,) = api.wait_for("answerInlineQuery", lambda c: c.params["inline_query_id"] == query_id)
    assert call.ok and call.params["results"]
    assert (
        "&lt;b&gt;Palantir&lt;/b&gt; &amp; AWS"
        in call.params["results"][0]["input_message_content"]["message_text"]
    )
    assert api.rejected() == []


@pytest.mark.parametrize("query", ["", "   ", "🔥🔥"])
def test_inline_query_without_words_gets_no_results(api: FakeBotApi, bot: BotThread, query: str) -> None:
    query_id = api.inline_query(query)
    (call,) = api.wait_for("answerInlineQuery", lambda c: c.params["inline_query_id"] == query_id)
    assert call.ok and call.params["results"] == []
    assert api.rejected() == []


# --- buttons ------------------------------------------------------------------------------------


def test_more_shows_the_next_citations_and_drops_its_button(
    api: FakeBotApi, bot: BotThread, real_engine: Engine
) -> None:
    expected = Shown(real_engine.answer(PALANTIR, 9))
    first_page, _ = expected.next_page(3)
    second_page, _ = expected.next_page(3)
    assert second_page, "precondition: the answer has a second page"
    mark = api.mark()
    api.send_text(PALANTIR)
    (first,) = reply_to(api, PRIVATE, mark)
    assert all(squash(c.quote) in squash(first.result["text"]) for c in first_page)
    more = buttons(first.result)["More"]
    assert len(more.encode()) <= 64

    mark = api.mark()
    query_id = api.press(first.result, more)
    (page,) = reply_to(api, PRIVATE, mark)
    text = squash(page.result["text"])
    for citation in second_page:
        assert f"[{citation.n}]" in text and squash(citation.quote) in text
    assert "[1]" not in text
    (edit,) = api.wait_for("editMessageReplyMarkup", since=mark)
    assert edit.ok and "More" not in buttons(api.message_now(PRIVATE["id"], first.result["message_id"]) or {})
    assert api.query_answer(query_id) is not None
    assert ("More" in buttons(page.result)) == expected.more
    assert api.rejected() == []


def test_notes_come_with_the_citations_they_compare(
    api: FakeBotApi, bot: BotThread, real_engine: Engine
) -> None:
    question = "How many employees signed the letter?"
    expected = Shown(real_engine.answer(question, 9))
    citations, notes = expected.next_page(3)
    assert expected.answer.notes and notes, "precondition: the engine notes figures that differ"
    mark = api.mark()
    api.send_text(question)
    (reply,) = reply_to(api, PRIVATE, mark)
    text = squash(reply.result["text"])
    for citation in citations:
        assert f"[{citation.n}]" in text
    for note in notes:
        assert squash(note) in text
    assert api.rejected() == []


def test_votes_are_logged_with_the_question(
    api: FakeBotApi, bot: BotThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.feedback")
    mark = api.mark()
    api.send_text(BEZOS)
    (reply,) = reply_to(api, PRIVATE, mark)
    query_id = api.press(reply.result, buttons(reply.result)["👎"])
    api.wait_for("answerCallbackQuery", lambda c: c.params["callback_query_id"] == query_id)
    assert "Thanks" in (api.query_answer(query_id) or {}).get("text", "")
    votes = [r.getMessage() for r in caplog.records if r.name == "bot.feedback"]
    assert len(votes) == 1 and "down" in votes[0] and BEZOS in votes[0]
    assert api.rejected() == []


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("m:AAAAAAAA", "too old"),  # a More button from before a restart
        ("v:AAAAAAAA:up", "too old"),
        ("v:AAAAAAAA:sideways", "don't know that button"),
        ("x:99", "don't know that button"),
        ("m", "don't know that button"),
        ("<b>&", "don't know that button"),
        ("z" * 64, "don't know that button"),
    ],
)
def test_stale_and_forged_buttons_are_answered_gracefully(
    api: FakeBotApi, bot: BotThread, data: str, expected: str
) -> None:
    mark = api.mark()
    api.send_text("/start")
    (start,) = reply_to(api, PRIVATE, mark)
    query_id = api.press(start.result, data)
    api.wait_for("answerCallbackQuery", lambda c: c.params["callback_query_id"] == query_id)
    assert expected in (api.query_answer(query_id) or {}).get("text", "")
    assert api.rejected() == []


# --- commands -----------------------------------------------------------------------------------


def test_start_offers_examples_that_are_answered(api: FakeBotApi, bot: BotThread) -> None:
    mark = api.mark()
    api.send_text("/start")
    (start,) = reply_to(api, PRIVATE, mark)
    assert "June 2018 Amazon employee protest" in start.result["text"]
    examples = buttons(start.result)
    assert list(examples) == list(EXAMPLES)
    mark = api.mark()
    api.press(start.result, examples[EXAMPLES[1]])
    (answer,) = reply_to(api, PRIVATE, mark)
    text = squash(answer.result["text"])
    assert text.startswith(f"Q: {EXAMPLES[1]}") and "[1]" in text
    assert api.rejected() == []


def test_examples_are_answered_by_the_articles(real_engine: Engine) -> None:
    for question in EXAMPLES:
        assert not real_engine.answer(question).abstained, question


def test_help_and_sources(api: FakeBotApi, bot: BotThread, real_engine: Engine) -> None:
    mark = api.mark()
    api.send_text("/help")
    (help_reply,) = reply_to(api, PRIVATE, mark)
    assert "/ask" in help_reply.result["text"] and "@protest_test_bot" in help_reply.result["text"]
    mark = api.mark()
    api.send_text("/sources", chat=GROUP)
    (sources,) = reply_to(api, GROUP, mark)
    lines = [line for line in sources.result["text"].splitlines() if line[:1].isdigit()]
    assert len(lines) == len(real_engine.sources())
    for source, line in zip(real_engine.sources(), lines, strict=True):
        if source.date:
            assert source.date in line
    assert api.rejected() == []


def test_abstention_is_honest_and_points_to_sources(
    api: FakeBotApi, bot: BotThread, real_engine: Engine
) -> None:
    question = "What is the best pizza in Naples?"
    assert real_engine.answer(question).abstained
    mark = api.mark()
    api.send_text(question)
    (reply,) = reply_to(api, PRIVATE, mark)
    assert "don't cover" in reply.result["text"] and "/sources" in reply.result["text"]
    assert "reply_markup" not in reply.params
    assert api.rejected() == []


# --- failures: retries and the error handler ----------------------------------------------------


def test_429_is_waited_out_and_the_reply_still_arrives(api: FakeBotApi, bot: BotThread) -> None:
    api.fail_next("sendMessage", status=429, retry_after=1)
    mark = api.mark()
    api.send_text(PALANTIR)
    (reply,) = api.wait_for("sendMessage", lambda c: c.ok, since=mark)
    (limited,) = [c for c in api.calls("sendMessage", mark) if c.status == 429]
    assert reply.at - limited.at >= 1.0, "retried only after retry_after"
    assert reply.params["text"] == limited.params["text"]
    assert api.rejected() == []


def test_network_errors_are_retried_with_backoff(api: FakeBotApi, bot: BotThread) -> None:
    api.fail_next("sendMessage", status=502)
    api.fail_next("sendMessage", drop=True)
    mark = api.mark()
    api.send_text(PALANTIR)
    api.wait_for("sendMessage", lambda c: c.ok, since=mark)
    attempts = api.calls("sendMessage", mark)
    assert [c.status for c in attempts] == [502, 0, 200]
    assert attempts[2].at - attempts[1].at >= attempts[1].at - attempts[0].at > 0, "the wait grows"
    assert api.rejected() == []


def test_a_failing_handler_is_logged_and_the_user_told(
    api: FakeBotApi, bot: BotThread, caplog: pytest.LogCaptureFixture
) -> None:
    api.fail_next("sendMessage", status=400, description="Bad Request: chat not found")
    mark = api.mark()
    api.send_text(PALANTIR)
    (told,) = api.wait_for("sendMessage", lambda c: c.ok, since=mark)
    assert "something went wrong" in told.result["text"]
    failures = [r for r in caplog.records if r.name == "bot.telegram.handlers" and r.levelno == logging.ERROR]
    assert failures and failures[0].exc_info is not None
    assert "Traceback" not in told.result["text"]
    assert api.rejected() == []


# --- concurrency --------------------------------------------------------------------------------


class GatedEngine:
    """The real engine, except that a question with "slowly" in it waits at a gate in the engine."""

    def __init__(self, engine: Engine, gate: threading.Event) -> None:
        self.engine, self.gate = engine, gate

    def sources(self) -> list[Any]:
        return self.engine.sources()

    def answer(self, question: str, k: int = 3, previous: Any = None) -> Any:
        if "slowly" in question and not self.gate.wait(30):
            raise TimeoutError("the gate was never opened")
        return self.engine.answer(question, k, previous)


def test_a_slow_question_does_not_hold_up_others(
    api: FakeBotApi, start_bot: Callable[..., BotThread], real_engine: Engine
) -> None:
    gate = threading.Event()
    start_bot(engine=GatedEngine(real_engine, gate))
    mark = api.mark()
    api.send_text("Answer slowly: what does Palantir run on?")
    api.send_text(BEZOS, chat=BOB_PRIVATE, user=BOB)
    (fast,) = reply_to(api, BOB_PRIVATE, mark)  # answered while the first question is still in the engine
    assert "Bezos" in fast.result["text"]
    assert api.sent_to(PRIVATE["id"], mark) == []
    gate.set()
    (slow,) = reply_to(api, PRIVATE, mark)
    assert "Palantir" in slow.result["text"] and slow.at > fast.at
    assert api.rejected() == []


# --- limits -------------------------------------------------------------------------------------


def test_per_user_rate_limit_replies_politely_once(
    api: FakeBotApi, start_bot: Callable[..., BotThread]
) -> None:
    bot = start_bot(rate_limit_per_minute=2)
    mark = api.mark()
    for _ in range(4):
        api.send_text(PALANTIR)
    api.send_text(PALANTIR, chat=BOB_PRIVATE, user=BOB)
    reply_to(api, BOB_PRIVATE, mark)
    reply_to(api, PRIVATE, mark, count=3)
    bot.wait_idle(api)
    alice = api.sent_to(PRIVATE["id"], mark)
    polite = [c for c in alice if "faster than I can answer" in c.result["text"]]
    assert len(alice) == 3 and len(polite) == 1, "two answers, one notice, then silence"
    assert api.rejected() == []


def test_global_rate_limit_covers_all_users(api: FakeBotApi, start_bot: Callable[..., BotThread]) -> None:
    start_bot(rate_limit_global_per_minute=2)
    mark = api.mark()
    api.send_text(PALANTIR)
    reply_to(api, PRIVATE, mark)
    api.send_text(PALANTIR, chat=BOB_PRIVATE, user=BOB)
    reply_to(api, BOB_PRIVATE, mark)
    api.send_text(PALANTIR, chat=ADMIN_PRIVATE, user=ADMIN)
    (third,) = reply_to(api, ADMIN_PRIVATE, mark)
    assert "a lot of questions right now" in third.result["text"]
    assert api.rejected() == []


# --- admin --------------------------------------------------------------------------------------


def test_reindex_is_for_admins_and_swaps_the_index_in(
    api: FakeBotApi, start_bot: Callable[..., BotThread], built: Settings
) -> None:
    start_bot(settings=built, engine=open_engine(built))
    mark = api.mark()
    api.send_text("/reindex")
    (refused,) = reply_to(api, PRIVATE, mark)
    assert "only the bot's admins" in refused.result["text"]

    (built.corpus / "005_walkout.md").write_text(NEW_ARTICLE, encoding="utf-8")

    mark = api.mark()
    api.send_text("/reindex", chat=ADMIN_PRIVATE, user=ADMIN)
    (edit,) = api.wait_for("editMessageText", since=mark, timeout=60)
    assert edit.ok and "6 articles" in edit.result["text"] and "1 new" in edit.result["text"]
    mark = api.mark()
    api.send_text("/sources", chat=ADMIN_PRIVATE, user=ADMIN)
    (sources,) = reply_to(api, ADMIN_PRIVATE, mark)
    assert "I answer from these 6 articles" in sources.result["text"]
    assert (
        '<a href="https://example.org/walkout">Amazon staff walk out over Rekognition'
        in sources.params["text"]
    )
    assert api.rejected() == []


def test_an_index_written_while_the_bot_runs_is_answered_from_without_reindex(
    api: FakeBotApi, start_bot: Callable[..., BotThread], built: Settings, fake_embedder: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    from bot.indexer import update_from_settings
    from tests.test_api import corrupt_new_version

    # Every update checks the folder (no fixed waits): the check itself is one small file read.
    settings = built.model_copy(update={"reload_seconds": 1e-9})
    start_bot(settings=settings, engine=open_engine(settings))
    question = "Did a spokesperson comment on the walkout?"

    def ask() -> str:
        mark = api.mark()
        api.send_text(question)
        (reply,) = reply_to(api, PRIVATE, mark)
        return squash(reply.result["text"])

    assert "declined to comment on the walkout" not in ask()
    (settings.corpus / "005_walkout.md").write_text(NEW_ARTICLE, encoding="utf-8")
    update_from_settings(settings, fake_embedder)  # what `protest-bot add` does, in another process
    deadline = time.monotonic() + 30
    while "declined to comment on the walkout" not in (text := ask()):
        assert time.monotonic() < deadline, f"the new article was never answered: {text}"
    caplog.set_level(logging.WARNING, logger="bot.index_reload")
    corrupt_new_version(settings.index)
    for _ in range(3):  # each question checks again: the broken version is reported once
        assert "declined to comment on the walkout" in ask()
    warnings = [r for r in caplog.records if r.name == "bot.index_reload" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "still answering from the old one" in warnings[0].getMessage()
    assert api.rejected() == []


# --- webhook mode -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def post(url: str, body: bytes, secret: str | None) -> int:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_webhook_mode_checks_the_secret_token(api: FakeBotApi, start_bot: Callable[..., BotThread]) -> None:
    port, secret = free_port(), "a-webhook_secret-0123456789"
    start_bot(
        webhook=True,
        webhook_url="https://bot.example.org/telegram/hook",
        webhook_secret=secret,
        webhook_listen="127.0.0.1",
        webhook_port=port,
    )
    assert api.webhook is not None and api.webhook["url"] == "https://bot.example.org/telegram/hook"
    assert api.webhook["secret_token"] == secret
    local = f"http://127.0.0.1:{port}/telegram/hook"
    update = update_json(api.take_update("message", api.message(PALANTIR)))
    mark = api.mark()
    assert post(local, update, None) == 403
    assert post(local, update, "not-the-secret") == 403
    assert post(local, update, secret) == 200
    (reply,) = reply_to(api, PRIVATE, mark)
    assert "Palantir" in reply.result["text"]
    assert api.calls("getUpdates") == []
    assert api.rejected() == []


# --- the token never reaches a log --------------------------------------------------------------


def test_the_token_never_reaches_a_log(
    api: FakeBotApi, start_bot: Callable[..., BotThread], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    httpx_logger = logging.getLogger("httpx")
    level = httpx_logger.level
    httpx_logger.setLevel(logging.DEBUG)  # as verbose as anyone could make it
    try:
        start_bot()
        api.fail_next("sendMessage", status=400, description="Bad Request: chat not found")  # a traceback
        mark = api.mark()
        api.send_text(PALANTIR)
        api.wait_for("sendMessage", lambda c: c.ok, since=mark)
        api.inline_query(PALANTIR)
        api.wait_for("answerInlineQuery")
    finally:
        httpx_logger.setLevel(level)
    logged = caplog.text + "".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert TOKEN not in logged
    assert "bot<redacted>/getUpdates" in logged, "httpx did log the request URLs, redacted"
    assert any(r.exc_info for r in caplog.records), "a traceback was logged too"


def utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2
