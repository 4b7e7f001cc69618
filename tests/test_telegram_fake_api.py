"""The fake Bot API itself: its HTML parser agrees with tdlib's own test cases, and it refuses over HTTP
what Telegram refuses, with Telegram's texts. The end-to-end tests are only as good as this."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fake_bot_api import GROUP, PRIVATE, TOKEN, EntityError, FakeBotApi, parse_html

# Cases from tdlib's test/message_entities.cpp (TEST(MessageEntities, parse_html)).
TDLIB_ERRORS = [
    ("🏟 🏟&lt;<abacaba", "Unclosed start tag at byte offset 13"),
    ("🏟 🏟&lt;<abac aba>", 'Unsupported start tag "abac" at byte offset 13'),
    ("🏟 🏟&lt;<abac>", 'Unsupported start tag "abac" at byte offset 13'),
    ("🏟 🏟&lt;<i   =aba>", 'Empty attribute name in the tag "i" at byte offset 13'),
    (
        "🏟 🏟&lt;<i    aba>",
        'Expected equal sign in declaration of an attribute of the tag "i" at byte offset 13',
    ),
    ("🏟 🏟&lt;<i    aba  =  ", 'Unclosed start tag "i" at byte offset 13'),
    ("🏟 🏟&lt;<i    aba  =  190azAz-.,", "Unexpected end of name token at byte offset 27"),
    ('🏟 🏟&lt;<i    aba  =  "&lt;&gt;&quot;>', "Unclosed start tag at byte offset 13"),
    ("🏟 🏟&lt;</", "Unexpected end tag at byte offset 13"),
    ("🏟 🏟&lt;<b></b></", "Unexpected end tag at byte offset 20"),
    ("🏟 🏟&lt;<i>a</i   ", "Unclosed end tag at byte offset 17"),
    ("🏟 🏟&lt;<i>a</em   >", 'Unmatched end tag at byte offset 17, expected "</i>", found "</em>"'),
    (
        "&#57311;",
        "Text contains invalid Unicode characters after decoding HTML entities, check for unmatched",
    ),
    ("<b>never closed", "Can't find end tag corresponding to start tag b"),
    ("a < b", 'Unsupported start tag "" at byte offset 2'),
    ("<span>x</span>", 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
    ("<br>", 'Unsupported start tag "br" at byte offset 0'),
]
TDLIB_PARSES = [
    ("&lt;&gt;&amp;&quot;&laquo;&raquo;&#12345678;", '<>&"&laquo;&raquo;&#12345678;', []),
    ("➡️ ➡️<i>➡️ ➡️</i>", "➡️ ➡️➡️ ➡️", [("italic", 5, 5)]),
    ("🏟 🏟<i>🏟 &lt🏟</i>", "🏟 🏟🏟 <🏟", [("italic", 5, 6)]),
    ("🏟 🏟<i>🏟 &gt;<b aba   =   caba>&lt🏟</b></i>", "🏟 🏟🏟 ><🏟", [("italic", 5, 7), ("bold", 9, 3)]),
    ("🏟 🏟&lt;<i    aba  =  '&lt;&gt;&quot;'>a</>", "🏟 🏟<a", [("italic", 6, 1)]),
    ("🏟 🏟&lt;<i>a</    >", "🏟 🏟<a", [("italic", 6, 1)]),
    ("🏟 🏟&lt;<b></b>", "🏟 🏟<", []),
    (
        "<blockquote>quoted</blockquote> <a href='https://t.org/?a=1&amp;b'>x</a>",
        "quoted x",
        [("blockquote", 0, 6)],
    ),
]


@pytest.mark.parametrize(("html", "error"), TDLIB_ERRORS)
def test_the_parser_refuses_what_tdlib_refuses(html: str, error: str) -> None:
    with pytest.raises(EntityError) as caught:
        parse_html(html, strict_ampersand=False)
    assert str(caught.value).startswith(error)


@pytest.mark.parametrize(("html", "text", "entities"), TDLIB_PARSES)
def test_the_parser_accepts_what_tdlib_accepts(
    html: str, text: str, entities: list[tuple[str, int, int]]
) -> None:
    parsed, found = parse_html(html, strict_ampersand=False)
    assert parsed == text
    assert [(e["type"], e["offset"], e["length"]) for e in found if e["type"] != "text_link"] == entities


def test_a_bare_ampersand_is_refused_only_in_strict_mode() -> None:
    assert parse_html("AT&T", strict_ampersand=False)[0] == "AT&T"
    with pytest.raises(EntityError, match="byte offset 2"):
        parse_html("AT&T")
    assert parse_html("AT&amp;T &#38; &#x26;")[0] == "AT&T & &"


# --- over HTTP ----------------------------------------------------------------------------------


@pytest.fixture
def api() -> Iterator[FakeBotApi]:
    with FakeBotApi() as server:
        server.message("hello", chat=PRIVATE)  # the chats exist once someone wrote in them
        server.message("hello", chat=GROUP)
        yield server


def call(api: FakeBotApi, method: str, token: str = TOKEN, **params: Any) -> tuple[int, dict[str, Any]]:
    """POST form-encoded parameters as python-telegram-bot does (JSON-typed ones as JSON strings)."""
    form = {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}
    body = urllib.parse.urlencode(form).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{api.port}/bot{token}/{method}", data=body, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read())


def refusal(api: FakeBotApi, method: str, **params: Any) -> str:
    status, body = call(api, method, **params)
    assert status == 400 and body["ok"] is False and body["error_code"] == 400
    return str(body["description"])


def keyboard(*data: str) -> dict[str, Any]:
    return {"inline_keyboard": [[{"text": f"b{i}", "callback_data": d} for i, d in enumerate(data)]]}


def article(result_id: str, text: str = "<b>ok</b>") -> dict[str, Any]:
    content = {"message_text": text, "parse_mode": "HTML"}
    return {"type": "article", "id": result_id, "title": "t", "input_message_content": content}


def test_send_message_limits(api: FakeBotApi) -> None:
    chat = PRIVATE["id"]
    assert refusal(api, "sendMessage", chat_id=chat, text="") == "Bad Request: message text is empty"
    assert refusal(api, "sendMessage", chat_id=chat, text=" \n ") == "Bad Request: message text is empty"
    assert refusal(api, "sendMessage", chat_id=chat, text="a" * 4097) == "Bad Request: message is too long"
    assert refusal(api, "sendMessage", chat_id=chat, text="😀" * 2049) == "Bad Request: message is too long"
    assert call(api, "sendMessage", chat_id=chat, text="😀" * 2048)[0] == 200
    html = "<b>" + "a" * 4096 + "</b>"  # the limit counts the text after parsing, not the tags
    assert call(api, "sendMessage", chat_id=chat, text=html, parse_mode="HTML")[0] == 200
    assert refusal(api, "sendMessage", chat_id=424242, text="hi") == "Bad Request: chat not found"


@pytest.mark.parametrize(
    ("html", "error"),
    [
        ("<b>bold", "Can't find end tag corresponding to start tag b"),
        ("<u>x</b>", 'Unmatched end tag at byte offset 4, expected "</u>", found "</b>"'),
        ("<marquee>x</marquee>", 'Unsupported start tag "marquee" at byte offset 0'),
        ("1 < 2", 'Unsupported start tag "" at byte offset 2'),
        ("Q&A", 'Unescaped "&" at byte offset 1'),
    ],
)
def test_send_message_refuses_bad_html(api: FakeBotApi, html: str, error: str) -> None:
    description = refusal(api, "sendMessage", chat_id=GROUP["id"], text=html, parse_mode="HTML")
    assert description.startswith(f"Bad Request: can't parse entities: {error}")


def test_buttons_and_replies(api: FakeBotApi) -> None:
    chat = PRIVATE["id"]
    too_long = keyboard("d" * 65)
    assert (
        refusal(api, "sendMessage", chat_id=chat, text="x", reply_markup=too_long)
        == "Bad Request: BUTTON_DATA_INVALID"
    )
    assert call(api, "sendMessage", chat_id=chat, text="x", reply_markup=keyboard("d" * 64))[0] == 200
    missing = {"message_id": 999}
    assert refusal(api, "sendMessage", chat_id=chat, text="x", reply_parameters=missing) == (
        "Bad Request: message to be replied not found"
    )
    lenient = {"message_id": 999, "allow_sending_without_reply": True}
    assert call(api, "sendMessage", chat_id=chat, text="x", reply_parameters=lenient)[0] == 200


def test_edits(api: FakeBotApi) -> None:
    chat = PRIVATE["id"]
    _, sent = call(api, "sendMessage", chat_id=chat, text="<b>same</b>", parse_mode="HTML")
    message_id = sent["result"]["message_id"]
    description = refusal(
        api, "editMessageText", chat_id=chat, message_id=message_id, text="<b>same</b>", parse_mode="HTML"
    )
    assert description.startswith("Bad Request: message is not modified")
    assert call(api, "editMessageText", chat_id=chat, message_id=message_id, text="other")[0] == 200
    assert (
        refusal(api, "editMessageText", chat_id=chat, message_id=4040, text="x")
        == "Bad Request: message to edit not found"
    )
    assert (
        refusal(api, "editMessageText", chat_id=chat, message_id=1, text="x")
        == "Bad Request: message can't be edited"
    )


def test_inline_answers(api: FakeBotApi) -> None:
    too_many = api.inline_query("q")
    results = [article(str(n)) for n in range(51)]
    assert (
        refusal(api, "answerInlineQuery", inline_query_id=too_many, results=results)
        == "Bad Request: RESULTS_TOO_MUCH"
    )
    duplicate = api.inline_query("q")
    results = [article("same"), article("same")]
    assert (
        refusal(api, "answerInlineQuery", inline_query_id=duplicate, results=results)
        == "Bad Request: RESULT_ID_DUPLICATE"
    )
    bad_html = api.inline_query("q")
    description = refusal(api, "answerInlineQuery", inline_query_id=bad_html, results=[article("1", "<i>x")])
    assert description.startswith("Bad Request: can't parse entities")
    fine = api.inline_query("q")
    assert (
        call(api, "answerInlineQuery", inline_query_id=fine, results=[article(str(n)) for n in range(50)])[0]
        == 200
    )
    assert refusal(api, "answerInlineQuery", inline_query_id=fine, results=[]) == (
        "Bad Request: query is too old and response timeout expired or query ID is invalid"
    )


def test_callback_answers(api: FakeBotApi) -> None:
    query = api.press(api.message("x"), "m:key")
    assert (
        refusal(api, "answerCallbackQuery", callback_query_id=query, text="x" * 201)
        == "Bad Request: MESSAGE_TOO_LONG"
    )
    assert call(api, "answerCallbackQuery", callback_query_id=query, text="ok")[0] == 200
    assert refusal(api, "answerCallbackQuery", callback_query_id=query).startswith(
        "Bad Request: query is too old"
    )


def test_commands_actions_token_and_unknown_methods(api: FakeBotApi) -> None:
    assert refusal(api, "setMyCommands", commands=[{"command": "Start", "description": "x"}]) == (
        "Bad Request: BOT_COMMAND_INVALID"
    )
    assert refusal(api, "sendChatAction", chat_id=PRIVATE["id"], action="dancing") == (
        "Bad Request: wrong parameter action in request"
    )
    assert call(api, "getMe", token="123456789:AAHsomebody-else_s-token-000000000")[0] == 401
    status, body = call(api, "sendTelepathy")
    assert status == 404 and body["description"] == "Not Found"


def test_scripted_429_carries_retry_after(api: FakeBotApi) -> None:
    api.fail_next("sendMessage", status=429, retry_after=3)
    status, body = call(api, "sendMessage", chat_id=PRIVATE["id"], text="x")
    assert status == 429 and body["parameters"] == {"retry_after": 3}
    assert body["description"] == "Too Many Requests: retry after 3"
    assert api.rejected() == [], "scripted failures are not counted as refusals"
    assert call(api, "sendMessage", chat_id=PRIVATE["id"], text="x")[0] == 200


def test_user_messages_carry_the_entities_telegram_marks(api: FakeBotApi) -> None:
    message = api.message("/ask@protest_test_bot 😀 what, @alice?", chat=GROUP)
    assert message["entities"] == [
        {"type": "bot_command", "offset": 0, "length": 21},
        {"type": "mention", "offset": 31, "length": 6},
    ]
