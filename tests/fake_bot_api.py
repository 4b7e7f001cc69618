"""A fake Telegram Bot API server for tests: real HTTP on 127.0.0.1, run in a thread of its own.

It serves the methods the bot uses and validates their parameters as Telegram does, answering with
Telegram's own error texts: empty or over-long text (4096 UTF-16 units after parsing), HTML that
Telegram's parser refuses (its rules are ported from tdlib's `parse_html`), callback_data over 64
bytes, more than 50 or duplicate inline results, stale query ids, unknown chats and messages.

One rule is stricter than Telegram: a bare `&` (one that does not start an entity) is refused. tdlib
keeps it as text, but the Bot API documentation says it must be escaped, and in the bot's output it
can only mean a missed escape.

Tests push updates (messages, edits, stickers, inline queries, button presses), which the bot
receives by long polling or which a test posts to the bot's webhook, and then read the calls the bot
made. A test can also script failures: a 429 with retry_after, a 502, or a dropped connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

TOKEN = "123456789:AAHtest-Token_of-the-fake_server0123"
BOT = {
    "id": 123456789,
    "is_bot": True,
    "first_name": "Protest Bot",
    "username": "protest_test_bot",
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": True,
}
ALICE = {"id": 1001, "is_bot": False, "first_name": "Alice", "username": "alice", "language_code": "en"}
BOB = {"id": 1002, "is_bot": False, "first_name": "Bob", "username": "bob", "language_code": "en"}
ADMIN = {"id": 4242, "is_bot": False, "first_name": "Ada", "username": "ada_admin"}
PRIVATE = {"id": ALICE["id"], "type": "private", "first_name": "Alice", "username": "alice"}
BOB_PRIVATE = {"id": BOB["id"], "type": "private", "first_name": "Bob", "username": "bob"}
ADMIN_PRIVATE = {"id": ADMIN["id"], "type": "private", "first_name": "Ada"}
GROUP = {"id": -1001234567890, "type": "supergroup", "title": "Protest readers"}

MESSAGE_LIMIT = 4096
CALLBACK_DATA_LIMIT = 64
CALLBACK_ANSWER_LIMIT = 200
INLINE_RESULTS_LIMIT = 50
CHAT_ACTIONS = {
    "typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
    "upload_document", "choose_sticker", "find_location", "record_video_note", "upload_video_note",
}  # fmt: skip
JSON_FIELDS = {
    "reply_markup", "results", "commands", "reply_parameters", "link_preview_options", "allowed_updates",
    "entities", "scope", "button", "input_message_content",
}  # fmt: skip


# --- Telegram's HTML parser ---------------------------------------------------------------------


class EntityError(ValueError):
    """The text is not HTML that Telegram accepts; the message is tdlib's."""


_TAGS = {
    "a", "b", "strong", "i", "em", "s", "strike", "del", "u", "ins", "tg-spoiler", "tg-emoji", "span",
    "pre", "code", "blockquote",
}  # fmt: skip
_SPACE = {0x20, 0x09, 0x0A, 0x0B, 0x0D, 0x00}  # tdlib's is_space counts the terminating NUL
_ENTITY_TYPES = {
    "b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline", "ins": "underline",
    "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough", "tg-spoiler": "spoiler",
    "span": "spoiler", "code": "code", "pre": "pre", "blockquote": "blockquote", "a": "text_link",
    "tg-emoji": "custom_emoji",
}  # fmt: skip


def _decode_entity(data: bytes, pos: int) -> tuple[int, int] | None:
    """tdlib's decode_html_entity: (code point, position after it), or None when `&` starts no entity."""

    def at(i: int) -> int:
        return data[i] if i < len(data) else 0

    end = pos + 1
    code = 0
    if at(end) == ord("#"):
        end += 1
        if at(pos + 2) == ord("x"):
            end += 1
            while chr(at(end)) in "0123456789abcdefABCDEF" and at(end):
                code = code * 16 + int(chr(at(end)), 16)
                end += 1
        else:
            while ord("0") <= at(end) <= ord("9"):
                code = code * 10 + at(end) - ord("0")
                end += 1
        if code == 0 or code >= 0x10FFFF or end - pos >= 10:
            return None
    else:
        while chr(at(end)).isascii() and chr(at(end)).isalpha():
            end += 1
        code = {b"lt": ord("<"), b"gt": ord(">"), b"amp": ord("&"), b"quot": ord('"')}.get(
            data[pos + 1 : end], 0
        )
        if not code:
            return None
    if at(end) == ord(";"):
        end += 1
    return code, end


def parse_html(text: str, strict_ampersand: bool = True) -> tuple[str, list[dict[str, Any]]]:
    """Telegram's HTML parse: the plain text and its entities (UTF-16 offsets), or EntityError."""
    data = text.encode("utf-8")

    def at(i: int) -> int:
        return data[i] if i < len(data) else 0

    out = bytearray()
    utf16 = 0
    stack: list[tuple[str, str, int]] = []
    entities: list[dict[str, Any]] = []
    surrogate = False
    i = 0
    while i < len(data):
        c = data[i]
        if c == ord("&"):
            decoded = _decode_entity(data, i)
            if decoded is not None:
                code, i = decoded
                utf16 += 2 if code > 0xFFFF else 1
                surrogate |= 0xD800 <= code <= 0xDFFF
                out += chr(code).encode("utf-8", "surrogatepass")
                continue
            if strict_ampersand:
                raise EntityError(
                    f'Unescaped "&" at byte offset {i}: write &amp; (stricter than tdlib, as documented)'
                )
        if c != ord("<"):
            if c & 0xC0 != 0x80:  # first byte of a UTF-8 character
                utf16 += 2 if c >= 0xF0 else 1
            out.append(c)
            i += 1
            continue
        begin = i
        i += 1
        if at(i) != ord("/"):
            while at(i) not in _SPACE and at(i) != ord(">"):
                i += 1
            if at(i) == 0:
                raise EntityError(f"Unclosed start tag at byte offset {begin}")
            tag = data[begin + 1 : i].decode("utf-8", "replace").lower()
            if tag not in _TAGS:
                raise EntityError(f'Unsupported start tag "{tag}" at byte offset {begin}')
            argument = ""
            while at(i) != ord(">"):
                while at(i) != 0 and at(i) in _SPACE:
                    i += 1
                if at(i) == ord(">"):
                    break
                name_begin = i
                while at(i) not in _SPACE and at(i) != ord("="):
                    i += 1
                name = data[name_begin:i].decode("utf-8", "replace")
                if not name:
                    raise EntityError(f'Empty attribute name in the tag "{tag}" at byte offset {begin}')
                while at(i) != 0 and at(i) in _SPACE:
                    i += 1
                if at(i) != ord("="):
                    raise EntityError(
                        "Expected equal sign in declaration of an attribute of the tag "
                        f'"{tag}" at byte offset {begin}'
                    )
                i += 1
                while at(i) != 0 and at(i) in _SPACE:
                    i += 1
                if at(i) == 0:
                    raise EntityError(f'Unclosed start tag "{tag}" at byte offset {begin}')
                if at(i) not in (ord("'"), ord('"')):
                    token_begin = i
                    while chr(at(i)).isascii() and (chr(at(i)).isalnum() or chr(at(i)) in ".-") and at(i):
                        i += 1
                    value = data[token_begin:i].decode("utf-8").lower()
                    if at(i) not in _SPACE and at(i) != ord(">"):
                        raise EntityError(f"Unexpected end of name token at byte offset {token_begin}")
                else:
                    quote_char = at(i)
                    i += 1
                    raw = bytearray()
                    while at(i) != quote_char and at(i) != 0:
                        if at(i) == ord("&"):
                            decoded = _decode_entity(data, i)
                            if decoded is not None:
                                raw += chr(decoded[0]).encode("utf-8", "surrogatepass")
                                i = decoded[1]
                                continue
                            if strict_ampersand:
                                raise EntityError(f'Unescaped "&" at byte offset {i}: write &amp;')
                        raw.append(at(i))
                        i += 1
                    if at(i) == quote_char:
                        i += 1
                    value = raw.decode("utf-8", "replace")
                if at(i) == 0:
                    raise EntityError(f"Unclosed start tag at byte offset {begin}")
                if tag == "a" and name == "href":
                    argument = value
                elif tag == "code" and name == "class" and value.startswith("language-"):
                    argument = value[9:]
                elif tag == "span" and name == "class" and value.startswith("tg-"):
                    argument = value[3:]
                elif tag == "tg-emoji" and name == "emoji-id":
                    argument = value
            if tag == "span" and argument != "spoiler":
                raise EntityError(f'Tag "span" must have class "tg-spoiler" at byte offset {begin}')
            stack.append((tag, argument, utf16))
        else:
            if not stack:
                raise EntityError(f"Unexpected end tag at byte offset {begin}")
            while at(i) not in _SPACE and at(i) != ord(">"):
                i += 1
            end_tag = data[begin + 2 : i].decode("utf-8", "replace").lower()
            while at(i) in _SPACE and at(i) != 0:
                i += 1
            if at(i) != ord(">"):
                raise EntityError(f"Unclosed end tag at byte offset {begin}")
            tag, argument, offset = stack[-1]
            if end_tag and end_tag != tag:
                raise EntityError(
                    f'Unmatched end tag at byte offset {begin}, expected "</{tag}>", found "</{end_tag}>"'
                )
            if utf16 > offset:
                entity: dict[str, Any] = {
                    "type": _ENTITY_TYPES[tag],
                    "offset": offset,
                    "length": utf16 - offset,
                }
                if tag == "a":
                    entity["url"] = argument
                entities.append(entity)
            stack.pop()
        i += 1  # past the tag's ">"
    if stack:
        raise EntityError(f"Can't find end tag corresponding to start tag {stack[-1][0]}")
    if surrogate:
        raise EntityError(
            "Text contains invalid Unicode characters after decoding HTML entities, "
            "check for unmatched surrogate code units"
        )
    return out.decode("utf-8"), sorted(entities, key=lambda e: (e["offset"], -e["length"]))


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, as Telegram counts."""
    return len(text.encode("utf-16-le")) // 2


# --- the server ---------------------------------------------------------------------------------


class Rejection(Exception):
    """A Bot API error answer: HTTP status, Telegram's description, optional parameters."""

    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


def bad_request(description: str) -> Rejection:
    """A 400 with Telegram's "Bad Request: " prefix."""
    return Rejection(400, f"Bad Request: {description}")


@dataclass
class Call:
    """One request the bot made, and what the fake answered."""

    method: str
    params: dict[str, Any]
    status: int
    body: dict[str, Any]
    at: float
    injected: bool = False

    @property
    def ok(self) -> bool:
        """Whether the request succeeded."""
        return self.status == 200 and self.body.get("ok") is True

    @property
    def result(self) -> Any:
        """The result of a successful call."""
        return self.body.get("result")

    @property
    def description(self) -> str:
        """The error description of a failed call."""
        return str(self.body.get("description", ""))

    @property
    def chat_id(self) -> int | None:
        """The chat the call was about, when it names one."""
        value = self.params.get("chat_id")
        return int(value) if value not in (None, "") and str(value).lstrip("-").isdigit() else None


@dataclass
class _Failure:
    status: int
    description: str
    retry_after: int | None = None
    drop: bool = False


@dataclass
class _Query:
    kind: str
    user: dict[str, Any]
    answered: bool = False
    answer: dict[str, Any] = field(default_factory=dict)


class FakeBotApi:
    """A Bot API server for one bot, on 127.0.0.1 at a free port, in a thread of its own."""

    def __init__(
        self, token: str = TOKEN, bot: dict[str, Any] | None = None, strict_ampersand: bool = True
    ) -> None:
        self.token = token
        self.bot = dict(bot or BOT)
        self.strict_ampersand = strict_ampersand
        self.port = 0
        self.webhook: dict[str, Any] | None = None
        self.commands: list[dict[str, Any]] | None = None
        self.allowed_updates: list[str] | None = None
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._calls: list[Call] = []
        self._updates: list[dict[str, Any]] = []
        self._offset = 0
        self._next_update = 100
        self._next_query = 500
        self._next_message: dict[int, int] = {}
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._chats: dict[int, dict[str, Any]] = {}
        self._queries: dict[str, _Query] = {}
        self._failures: dict[str, list[_Failure]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._wakeup: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._closing = False

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """What to give the bot as its Bot API base URL (the token is appended)."""
        return f"http://127.0.0.1:{self.port}/bot"

    def start(self) -> FakeBotApi:
        """Serve in a background thread; returns once the port is bound."""
        ready = threading.Event()
        loop = self._loop = asyncio.new_event_loop()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._open())
            ready.set()
            loop.run_forever()
            assert self._runner is not None
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, name="fake-bot-api", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake Bot API did not start")
        return self

    def stop(self) -> None:
        """Stop serving and join the thread (long polls in progress return at once)."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._end_long_polls)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> FakeBotApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _end_long_polls(self) -> None:
        self._closing = True
        if self._wakeup is not None:
            self._wakeup.set()

    async def _open(self) -> None:
        self._wakeup = asyncio.Event()
        app = web.Application(client_max_size=20 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    # --- scripting: updates and failures --------------------------------------------------------

    def fail_next(
        self,
        method: str,
        status: int = 429,
        description: str | None = None,
        retry_after: int | None = None,
        drop: bool = False,
        times: int = 1,
    ) -> None:
        """Make the next `times` calls of `method` fail: a 429 with retry_after, another status, or a drop."""
        if description is None:
            description = f"Too Many Requests: retry after {retry_after}" if status == 429 else "Bad Gateway"
        with self._lock:
            queue = self._failures.setdefault(method.lower(), [])
            queue.extend(_Failure(status, description, retry_after, drop) for _ in range(times))

    def message(
        self,
        text: str | None = None,
        *,
        chat: dict[str, Any] = PRIVATE,
        user: dict[str, Any] = ALICE,
        reply_to: dict[str, Any] | None = None,
        **content: Any,
    ) -> dict[str, Any]:
        """A message from a user, with the entities Telegram would find (commands, mentions); not yet sent."""
        with self._lock:
            message_id = self._new_message_id(chat["id"])
            self._chats[chat["id"]] = chat
        message: dict[str, Any] = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": chat,
            "from": user,
        }
        if text is not None:
            message["text"] = text
            entities = _entities_in(text)
            if entities:
                message["entities"] = entities
        if reply_to is not None:
            message["reply_to_message"] = reply_to
        message.update(content)
        with self._lock:
            self._messages[(chat["id"], message_id)] = message
        return message

    def send_text(self, text: str, **kwargs: Any) -> dict[str, Any]:
        """A user sends a text message; returns it."""
        message = self.message(text, **kwargs)
        self.push("message", message)
        return message

    def send_sticker(self, **kwargs: Any) -> dict[str, Any]:
        """A user sends a sticker."""
        sticker = {
            "file_id": "CAACAgIAAxkBAAEBsticker",
            "file_unique_id": "AgADsticker",
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": "🔥",
        }
        message = self.message(sticker=sticker, **kwargs)
        self.push("message", message)
        return message

    def send_photo(self, caption: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """A user sends a photo, with an optional caption."""
        photo = [{"file_id": "AgACAgphoto", "file_unique_id": "AQADphoto", "width": 90, "height": 90}]
        extra = {"caption": caption} if caption else {}
        message = self.message(photo=photo, **extra, **kwargs)
        self.push("message", message)
        return message

    def send_voice(self, **kwargs: Any) -> dict[str, Any]:
        """A user sends a voice note."""
        voice = {
            "file_id": "AwACAgvoice",
            "file_unique_id": "AgADvoice",
            "duration": 3,
            "mime_type": "audio/ogg",
        }
        message = self.message(voice=voice, **kwargs)
        self.push("message", message)
        return message

    def edit(self, message: dict[str, Any], text: str) -> dict[str, Any]:
        """A user edits one of their messages."""
        edited = {**message, "text": text, "edit_date": int(time.time())}
        edited.pop("entities", None)
        if _entities_in(text):
            edited["entities"] = _entities_in(text)
        with self._lock:
            self._messages[(message["chat"]["id"], message["message_id"])] = edited
        self.push("edited_message", edited)
        return edited

    def inline_query(self, query: str, user: dict[str, Any] = ALICE) -> str:
        """A user types `@bot query` in some chat; returns the query id."""
        query_id = self._new_query("inline", user)
        self.push(
            "inline_query",
            {"id": query_id, "from": user, "query": query, "offset": "", "chat_type": "sender"},
        )
        return query_id

    def press(self, message: dict[str, Any], data: str, user: dict[str, Any] = ALICE) -> str:
        """A user presses a button with callback `data` under a message; returns the callback query id."""
        query_id = self._new_query("callback", user)
        payload = {"id": query_id, "from": user, "chat_instance": "-4711", "data": data, "message": message}
        self.push("callback_query", payload)
        return query_id

    def push(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Queue an update for the next getUpdates (webhook tests post `update_json` themselves)."""
        with self._lock:
            self._next_update += 1
            update = {"update_id": self._next_update, kind: payload}
            self._updates.append(update)
        if self._loop is not None and self._wakeup is not None:
            self._loop.call_soon_threadsafe(self._wakeup.set)
        return update

    def take_update(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        """An update that is not queued for polling (for posting to a webhook)."""
        with self._lock:
            self._next_update += 1
            return {"update_id": self._next_update, kind: payload}

    def _new_message_id(self, chat_id: int) -> int:
        self._next_message[chat_id] = self._next_message.get(chat_id, 0) + 1
        return self._next_message[chat_id]

    def _new_query(self, kind: str, user: dict[str, Any]) -> str:
        with self._lock:
            self._next_query += 1
            query_id = f"{kind}-{self._next_query}"
            self._queries[query_id] = _Query(kind, user)
        return query_id

    # --- inspection -----------------------------------------------------------------------------

    def calls(self, method: str | None = None, since: int = 0) -> list[Call]:
        """The calls made so far (of one method, from a mark on)."""
        with self._lock:
            calls = self._calls[since:]
        return [c for c in calls if method is None or c.method.lower() == method.lower()]

    def mark(self) -> int:
        """A position in the call log, for `since=`."""
        with self._lock:
            return len(self._calls)

    def rejected(self) -> list[Call]:
        """Calls the fake refused on its own (scripted failures are not counted)."""
        return [c for c in self.calls() if not c.ok and not c.injected]

    def wait_for(
        self,
        method: str,
        where: Callable[[Call], bool] = lambda call: True,
        timeout: float = 30.0,
        since: int = 0,
        count: int = 1,
    ) -> list[Call]:
        """Wait until `count` calls of `method` matching `where` have been made; returns them."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [c for c in self._calls[since:] if c.method.lower() == method.lower() and where(c)]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [(c.method, c.status, c.params.get("text", "")[:80]) for c in self._calls[since:]]
                    raise TimeoutError(f"no {count} x {method} within {timeout} s; calls since mark: {seen}")
                self._changed.wait(remaining)

    def wait_confirmed(self, timeout: float = 30.0) -> None:
        """Wait until the bot has confirmed every queued update (asked getUpdates for a later offset).

        python-telegram-bot puts the updates of a poll into its update queue before it polls again,
        so by then each of them is in the bot's hands.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while any(u["update_id"] >= self._offset for u in self._updates):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"the bot did not fetch every update within {timeout} s")
                self._changed.wait(remaining)

    def sent_to(self, chat_id: int, since: int = 0) -> list[Call]:
        """Successful sendMessage calls to a chat."""
        return [c for c in self.calls("sendMessage", since) if c.ok and c.chat_id == chat_id]

    def query_answer(self, query_id: str) -> dict[str, Any] | None:
        """How the bot answered an inline or callback query (None while unanswered)."""
        with self._lock:
            query = self._queries.get(query_id)
            return dict(query.answer) if query and query.answered else None

    # --- HTTP -----------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        params = await _read_params(request)
        started = time.monotonic()
        if request.match_info["token"] != self.token:
            return self._record(method, params, Rejection(401, "Unauthorized"), started)
        with self._lock:
            queue = self._failures.get(method.lower())
            failure = queue.pop(0) if queue else None
        if failure is not None:
            if failure.drop:
                self._record(method, params, Rejection(0, "connection dropped"), started, injected=True)
                assert request.transport is not None
                request.transport.abort()
                return web.Response(status=500)
            parameters = {"retry_after": failure.retry_after} if failure.retry_after else None
            rejection = Rejection(failure.status, failure.description, parameters)
            return self._record(method, params, rejection, started, injected=True)
        handler = getattr(self, f"_m_{method.lower()}", None)
        if handler is None:
            return self._record(method, params, Rejection(404, "Not Found"), started)
        try:
            result = await handler(params)
        except Rejection as rejection:
            return self._record(method, params, rejection, started)
        return self._record(method, params, result, started)

    def _record(
        self, method: str, params: dict[str, Any], outcome: Any, started: float, injected: bool = False
    ) -> web.Response:
        if isinstance(outcome, Rejection):
            status = outcome.status
            body: dict[str, Any] = {"ok": False, "error_code": status, "description": outcome.description}
            if outcome.parameters:
                body["parameters"] = outcome.parameters
        else:
            status, body = 200, {"ok": True, "result": outcome}
        with self._changed:
            self._calls.append(Call(method, params, status, body, started, injected))
            self._changed.notify_all()
        return web.json_response(body, status=status or 500)

    # --- methods --------------------------------------------------------------------------------

    async def _m_getme(self, params: dict[str, Any]) -> dict[str, Any]:
        return self.bot

    async def _m_getupdates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        if self.webhook is not None:
            raise Rejection(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete "
                "the webhook first",
            )
        offset = int(params.get("offset") or 0)
        timeout = float(params.get("timeout") or 0)
        limit = min(int(params.get("limit") or 100), 100)
        allowed = params.get("allowed_updates")
        if allowed is not None:
            self.allowed_updates = list(allowed)
        deadline = time.monotonic() + timeout
        assert self._wakeup is not None
        while True:
            self._wakeup.clear()
            with self._lock:
                if offset > 0 and offset > self._offset:
                    self._offset = offset
                    self._changed.notify_all()  # for wait_confirmed
                pending = [u for u in self._updates if u["update_id"] >= self._offset]
            if allowed:
                pending = [u for u in pending if any(kind in u for kind in allowed)]
            remaining = deadline - time.monotonic()
            if pending or remaining <= 0 or self._closing:
                return pending[:limit]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), remaining)

    async def _m_deletewebhook(self, params: dict[str, Any]) -> bool:
        self.webhook = None
        if _flag(params.get("drop_pending_updates")):
            with self._lock:
                self._offset = self._next_update + 1
        return True

    async def _m_setwebhook(self, params: dict[str, Any]) -> bool:
        url = str(params.get("url") or "")
        if not url:
            self.webhook = None
            return True
        if not url.startswith("https://"):
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        secret = params.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise bad_request("secret token contains unallowed characters")
        self.webhook = {"url": url, "secret_token": secret, "allowed_updates": params.get("allowed_updates")}
        return True

    async def _m_getwebhookinfo(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            pending = len([u for u in self._updates if u["update_id"] >= self._offset])
        url = self.webhook["url"] if self.webhook else ""
        return {"url": url, "has_custom_certificate": False, "pending_update_count": pending}

    async def _m_setmycommands(self, params: dict[str, Any]) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise bad_request("can't parse commands JSON object")
        if len(commands) > 100:
            raise bad_request("BOT_COMMANDS_TOO_MUCH")
        for command in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(command.get("command", ""))):
                raise bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", "")).strip()) <= 256:
                raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        self.commands = commands
        return True

    async def _m_sendchataction(self, params: dict[str, Any]) -> bool:
        self._known_chat(params)
        if params.get("action") not in CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        return True

    async def _m_sendmessage(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._known_chat(params)
        text, entities = self._parse_text(params.get("text"), params.get("parse_mode"), MESSAGE_LIMIT)
        markup = _check_markup(params.get("reply_markup"))
        reply_to = self._reply_target(chat["id"], params)
        with self._lock:
            message_id = self._new_message_id(chat["id"])
        message: dict[str, Any] = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": chat,
            "from": _user(self.bot),
            "text": text,
        }
        if entities:
            message["entities"] = entities
        if markup:
            message["reply_markup"] = markup
        if reply_to is not None:
            message["reply_to_message"] = reply_to
        with self._lock:
            self._messages[(chat["id"], message_id)] = message
        return message

    async def _m_editmessagetext(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self._own_message(params)
        text, entities = self._parse_text(params.get("text"), params.get("parse_mode"), MESSAGE_LIMIT)
        markup = _check_markup(params.get("reply_markup"))
        if (
            text == message.get("text")
            and entities == message.get("entities", [])
            and markup == message.get("reply_markup")
        ):
            raise _not_modified()
        return self._update_message(message, text=text, entities=entities, reply_markup=markup)

    async def _m_editmessagereplymarkup(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self._own_message(params)
        markup = _check_markup(params.get("reply_markup"))
        if markup == message.get("reply_markup"):
            raise _not_modified()
        return self._update_message(message, reply_markup=markup)

    async def _m_answercallbackquery(self, params: dict[str, Any]) -> bool:
        query = self._open_query(params.get("callback_query_id"), "callback")
        text = str(params.get("text") or "")
        if len(text) > CALLBACK_ANSWER_LIMIT:
            raise bad_request("MESSAGE_TOO_LONG")
        query.answered, query.answer = True, {"text": text, "show_alert": _flag(params.get("show_alert"))}
        return True

    async def _m_answerinlinequery(self, params: dict[str, Any]) -> bool:
        query = self._open_query(params.get("inline_query_id"), "inline")
        results = params.get("results")
        if not isinstance(results, list):
            raise bad_request("can't parse inline query results JSON object")
        if len(results) > INLINE_RESULTS_LIMIT:
            raise bad_request("RESULTS_TOO_MUCH")
        seen: set[str] = set()
        for result in results:
            result_id = str(result.get("id", ""))
            if not 1 <= len(result_id.encode("utf-8")) <= 64:
                raise bad_request("RESULT_ID_INVALID")
            if result_id in seen:
                raise bad_request("RESULT_ID_DUPLICATE")
            seen.add(result_id)
            if result.get("type") == "article":
                if not str(result.get("title", "")).strip():
                    raise bad_request("RESULT_TITLE_EMPTY")
                content = result.get("input_message_content") or {}
                try:
                    self._parse_text(content.get("message_text"), content.get("parse_mode"), MESSAGE_LIMIT)
                except Rejection as exc:
                    if "message text is empty" in exc.description:
                        raise bad_request("MESSAGE_EMPTY") from None
                    if "message is too long" in exc.description:
                        raise bad_request("MESSAGE_TOO_LONG") from None
                    raise
            _check_markup(result.get("reply_markup"))
        query.answered = True
        query.answer = {
            "results": results,
            "cache_time": params.get("cache_time"),
            "button": params.get("button"),
        }
        return True

    # --- validation helpers ---------------------------------------------------------------------

    def _known_chat(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = params.get("chat_id")
        with self._lock:
            chat = self._chats.get(int(chat_id)) if str(chat_id).lstrip("-").isdigit() else None
        if chat is None:
            raise bad_request("chat not found")
        return chat

    def _parse_text(self, text: Any, parse_mode: Any, limit: int) -> tuple[str, list[dict[str, Any]]]:
        text = "" if text is None else str(text)
        entities: list[dict[str, Any]] = []
        mode = str(parse_mode or "").lower()
        if mode == "html":
            try:
                text, entities = parse_html(text, self.strict_ampersand)
            except EntityError as exc:
                raise bad_request(f"can't parse entities: {exc}") from None
        elif mode in ("markdown", "markdownv2"):
            raise bad_request(f"the fake Bot API does not parse {parse_mode}")
        elif mode:
            raise bad_request("unsupported parse_mode")
        if not text.strip():
            raise bad_request("message text is empty")
        if utf16_len(text.strip()) > limit:
            raise bad_request("message is too long")
        return text, entities

    def _reply_target(self, chat_id: int, params: dict[str, Any]) -> dict[str, Any] | None:
        reply = params.get("reply_parameters") or {}
        message_id = reply.get("message_id") or params.get("reply_to_message_id")
        if not message_id:
            return None
        allow = _flag(reply.get("allow_sending_without_reply", params.get("allow_sending_without_reply")))
        with self._lock:
            target = self._messages.get((int(reply.get("chat_id", chat_id)), int(message_id)))
        if target is None and not allow:
            raise bad_request("message to be replied not found")
        return target

    def _own_message(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("inline_message_id"):
            raise bad_request("MESSAGE_ID_INVALID")
        chat = self._known_chat(params)
        with self._lock:
            message = self._messages.get((chat["id"], int(params.get("message_id") or 0)))
        if message is None:
            raise bad_request("message to edit not found")
        if message.get("from", {}).get("id") != self.bot["id"]:
            raise bad_request("message can't be edited")
        return message

    def _update_message(self, message: dict[str, Any], **changes: Any) -> dict[str, Any]:
        updated = {**message, **{k: v for k, v in changes.items() if v}, "edit_date": int(time.time())}
        for key, value in changes.items():
            if not value:
                updated.pop(key, None)
        with self._lock:
            self._messages[(message["chat"]["id"], message["message_id"])] = updated
        return updated

    def _open_query(self, query_id: Any, kind: str) -> _Query:
        with self._lock:
            query = self._queries.get(str(query_id))
        if query is None or query.kind != kind or query.answered:
            raise bad_request("query is too old and response timeout expired or query ID is invalid")
        return query

    def message_now(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        """A message as it is now (after edits)."""
        with self._lock:
            message = self._messages.get((chat_id, message_id))
            return dict(message) if message else None


def _not_modified() -> Rejection:
    return bad_request(
        "message is not modified: specified new message content and reply markup are exactly the same as a "
        "current content and reply markup of the message"
    )


def _check_markup(markup: Any) -> dict[str, Any] | None:
    """Telegram's checks of an inline keyboard: button text, one action each, callback_data of 1-64 bytes."""
    if not markup:
        return None
    if not isinstance(markup, dict):
        raise bad_request("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" not in markup:
        return markup
    rows = markup["inline_keyboard"]
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise bad_request("can't parse inline keyboard button: InlineKeyboardButton must be an Object")
    actions = (
        "url", "callback_data", "switch_inline_query", "switch_inline_query_current_chat", "login_url",
        "web_app", "pay", "callback_game", "copy_text", "switch_inline_query_chosen_chat",
    )  # fmt: skip
    for row in rows:
        for button in row:
            if not str(button.get("text", "")).strip():
                raise bad_request("BUTTON_TEXT_INVALID")
            present = [a for a in actions if a in button]
            if len(present) != 1:
                raise bad_request(
                    "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
                )
            if "callback_data" in button and not 1 <= len(str(button["callback_data"]).encode("utf-8")) <= 64:
                raise bad_request("BUTTON_DATA_INVALID")
            if "url" in button and not re.match(r"(https?|tg)://\S+$", str(button["url"])):
                raise bad_request("BUTTON_URL_INVALID")
    return markup


_COMMAND = re.compile(r"(?<![\w/<>])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![\w/<>])")
_MENTION = re.compile(r"(?<!\w)@[A-Za-z0-9_]{2,32}(?!\w)")


def _entities_in(text: str) -> list[dict[str, Any]]:
    """The entities Telegram marks in a user's text: bot commands and @mentions (UTF-16 offsets)."""
    found = [("bot_command", m) for m in _COMMAND.finditer(text)] + [
        ("mention", m) for m in _MENTION.finditer(text)
    ]
    entities = [
        {"type": kind, "offset": utf16_len(text[: m.start()]), "length": utf16_len(m.group())}
        for kind, m in found
    ]
    return sorted(entities, key=lambda e: e["offset"])


def _user(bot: dict[str, Any]) -> dict[str, Any]:
    return {k: bot[k] for k in ("id", "is_bot", "first_name", "username")}


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


async def _read_params(request: web.Request) -> dict[str, Any]:
    """Parameters as Telegram reads them: query string, form, multipart or JSON; JSON-typed fields decoded."""
    params: dict[str, Any] = dict(request.query)
    if request.can_read_body:
        if request.content_type == "application/json":
            params.update(await request.json())
        else:
            form = await request.post()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
    for key in JSON_FIELDS & params.keys():
        if isinstance(params[key], str):
            try:
                params[key] = json.loads(params[key])
            except ValueError:
                raise_later = params[key]
                params[key] = {"__unparsable__": raise_later}
    return params


def update_json(update: dict[str, Any]) -> bytes:
    """An update as Telegram posts it to a webhook."""
    return json.dumps(update).encode("utf-8")


# --- running a bot against it -------------------------------------------------------------------


class BotThread:
    """Runs a python-telegram-bot Application in a thread of its own, as `run_polling` does (initialize,
    post_init, updater, start), without the signal handlers that only the main thread may install."""

    def __init__(self, app: Any, webhook: dict[str, Any] | None = None) -> None:
        self.app = app
        self.webhook = webhook
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="bot-under-test", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> BotThread:
        """Start the bot; returns once it polls (or listens), re-raising any start-up error."""
        self._thread.start()
        if not self._ready.wait(60):
            raise TimeoutError("the bot did not start within 60 s")
        if self._error is not None:
            self._thread.join(10)
            raise self._error
        return self

    def wait_idle(self, api: FakeBotApi, timeout: float = 30.0) -> None:
        """Wait until the bot has handled every update sent so far: each one fetched from `api` (or
        posted to its webhook) and its handler finished, replies and all. What the bot would send
        for those updates has been sent by then, so a test can check that nothing more came."""
        deadline = time.monotonic() + timeout
        api.wait_confirmed(timeout)
        # The update queue counts an update done once its handler has returned (task_done).
        remaining = max(deadline - time.monotonic(), 0.01)
        handled = asyncio.wait_for(self.app.update_queue.join(), remaining)
        try:
            asyncio.run_coroutine_threadsafe(handled, self._loop).result(remaining + 1)
        except TimeoutError as exc:
            raise TimeoutError(f"the bot did not finish handling its updates within {timeout} s") from exc

    def stop(self) -> None:
        """Stop the bot as run_polling does on Ctrl-C, and join its thread."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._up())
        except BaseException as exc:  # handed to start() in the test's thread
            self._error = exc
        self._ready.set()
        if self._error is None:
            self._loop.run_forever()
        self._loop.run_until_complete(self._down())
        self._loop.close()

    async def _up(self) -> None:
        from telegram import Update

        await self.app.initialize()
        if self.app.post_init:
            await self.app.post_init(self.app)
        if self.webhook is not None:
            await self.app.updater.start_webhook(**self.webhook, allowed_updates=Update.ALL_TYPES)
        else:
            await self.app.updater.start_polling(allowed_updates=Update.ALL_TYPES)
        await self.app.start()

    async def _down(self) -> None:
        if self.app.updater.running:
            await self.app.updater.stop()
        if self.app.running:
            await self.app.stop()
        with contextlib.suppress(Exception):
            await self.app.shutdown()
