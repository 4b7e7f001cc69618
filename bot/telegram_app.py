"""The Telegram front end: python-telegram-bot handlers over the engine.

Handlers only parse, call the engine (in a worker thread, so one question never blocks another),
render and send. This and nothing else in the package imports `telegram`; the CLI imports it lazily.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from pydantic import ValidationError
from telegram import (
    BotCommand,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InlineQueryResultArticle,
    InputTextMessageContent,
    LinkPreviewOptions,
    Message,
    Update,
    User,
)
from telegram.constants import ChatAction, ChatType, ParseMode
from telegram.error import BadRequest, InvalidToken, NetworkError, TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    Defaults,
    InlineQueryHandler,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot import telegram_render as render
from bot import telegram_state as state
from bot.answer import Engine, open_engine, validate_question
from bot.config import Settings, TelegramSettings
from bot.errors import BadInputError, ProtestBotError
from bot.index_reload import IndexReloader
from bot.indexer import UpdateReport, describe_changes, update_from_settings
from bot.models import Answer, Citation

log = logging.getLogger(__name__)
feedback_log = logging.getLogger("bot.feedback")

# Questions offered as buttons by /start; each is answered by the shipped articles (a test checks).
EXAMPLES = (
    "What did Amazon employees demand from Jeff Bezos?",
    "What does Palantir run on?",
    "Why did the workers mention IBM?",
)
COMMANDS = (
    ("start", "What I know, with example questions"),
    ("ask", "Ask a question (in groups)"),
    ("sources", "The articles I quote"),
    ("help", "How to ask"),
)
# A bot token as @BotFather gives it: the bot's numeric id, a colon, then the secret.
TOKEN_SHAPE = re.compile(r"\d{1,20}:[A-Za-z0-9_-]{30,100}")
# Telegram's rule for setWebhook's secret_token.
WEBHOOK_SECRET_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,256}")
# Only what the handlers use: Telegram then does not send edits, member changes and the like at all.
ALLOWED_UPDATES = ("message", "inline_query", "callback_query")
MAX_INLINE_RESULTS = 50
INLINE_CACHE_SECONDS = 300
TYPING_RENEW_SECONDS = 4.5  # Telegram shows "typing…" for 5 s
RETRY_AFTER_RETRIES = 3
NETWORK_RETRIES = 3
NETWORK_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 8.0
REDACTED = "<redacted>"


class TelegramStartError(ProtestBotError):
    """The bot could not start: the Bot API rejected the token or could not be reached."""


# --- secrets never reach a log ------------------------------------------------------------------

_secrets: set[str] = set()
_factory_installed = False


def protect_secret(secret: str) -> None:
    """Redact `secret` from every log record made from now on, in any logger (httpx and PTB included).

    httpx logs request URLs, which carry the token, and PTB logs the API URL and names the token in
    InvalidToken; redacting when the record is made covers every handler and formatter at once.
    """
    global _factory_installed
    if len(secret) < 8:
        return  # too short to redact without mangling unrelated text
    _secrets.update({secret, quote(secret, safe="")})
    if _factory_installed:
        return
    make_record = logging.getLogRecordFactory()

    def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        _redact_record(record)
        return record

    logging.setLogRecordFactory(redacting_factory)
    _factory_installed = True


class PollingErrorsInOneLine(logging.Filter):
    """PTB logs every failed getUpdates at ERROR with a traceback, then retries by itself: a flaky
    network filled the log with tracebacks. One warning line says as much."""

    PTB_MESSAGE = "Exception happened while polling for updates."

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == self.PTB_MESSAGE and record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            # The record factory redacted the record as made; this new text must be redacted too.
            record.msg, record.args = (
                "polling failed, retrying: %s: %s",
                (type(error).__name__, redact(str(error))),
            )
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class GivingUpInOneLine(logging.Filter):
    """When PTB gives up (the Bot API unreachable at start), it logs a traceback of ~100 lines just
    before `run` reports the same error in one `error:` line. Its record keeps one line, message and
    error; the traceback is for --verbose (the root logger at DEBUG)."""

    def filter(self, record: logging.LogRecord) -> bool:
        verbose = logging.getLogger().getEffectiveLevel() <= logging.DEBUG
        if record.exc_info and record.exc_info[1] is not None and not verbose:
            error = record.exc_info[1]
            record.msg, record.args = (
                "%s (%s: %s)",
                (record.getMessage(), type(error).__name__, redact(str(error))),
            )
            record.exc_info, record.exc_text = None, None
        return True


def shorten_polling_errors() -> None:
    """Install PollingErrorsInOneLine on PTB's Updater logger and GivingUpInOneLine on the logger of
    its network retry loop (once each)."""
    for name, kind in (("telegram.ext.Updater", PollingErrorsInOneLine), ("telegram.ext", GivingUpInOneLine)):
        logger = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in logger.filters):
            logger.addFilter(kind())


def redact(text: str) -> str:
    """`text` with every protected secret replaced."""
    for secret in tuple(_secrets):
        text = text.replace(secret, REDACTED)
    return text


def _redact_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a malformed record is the logging call's bug; leave it to the formatter
        return
    clean = redact(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and record.exc_info[1] is not None:
        text = logging.Formatter().formatException(record.exc_info)
        clean = redact(text)
        if clean != text:
            record.exc_text = clean  # formatters use exc_text as is when it is set


# --- settings -----------------------------------------------------------------------------------


def telegram_settings(**overrides: object) -> TelegramSettings:
    """TelegramSettings from options (those not None), environment and .env; one clear error if invalid."""
    try:
        return TelegramSettings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "value"
        raise BadInputError(f"invalid Telegram setting TELEGRAM_{where.upper()}: {first['msg']}") from None


def bot_token(tg: TelegramSettings) -> str:
    """The token, checked for shape (never echoed: a near-miss may be a real token with a typo)."""
    token = tg.bot_token.get_secret_value().strip() if tg.bot_token else ""
    if not token:
        raise BadInputError(
            "TELEGRAM_BOT_TOKEN is not set: create a bot with @BotFather and put its token in the "
            "environment or .env (see the Telegram section of README.md)"
        )
    if not TOKEN_SHAPE.fullmatch(token):
        raise BadInputError(
            "TELEGRAM_BOT_TOKEN is malformed: a bot token is the bot's id, a colon and a secret "
            "(like 123456789:AAE…), exactly as @BotFather gives it"
        )
    return token


def api_base_url(tg: TelegramSettings) -> str:
    """The Bot API base URL (the token is appended to it), checked to be http(s)."""
    url = tg.api_base_url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadInputError(
            f"TELEGRAM_API_BASE_URL must be an http(s) URL, like {TelegramSettings().api_base_url}"
        )
    return url.rstrip("/")


def webhook_options(tg: TelegramSettings) -> dict[str, Any]:
    """Arguments for PTB's webhook server: where to listen, the public URL, and the secret Telegram echoes."""
    url = (tg.webhook_url or "").strip()
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.netloc:
        raise BadInputError("the webhook URL must be a public https URL (Telegram only calls https webhooks)")
    # Without a configured secret, a random one still proves that updates come from Telegram.
    secret = tg.webhook_secret.get_secret_value() if tg.webhook_secret else secrets.token_urlsafe(32)
    if not WEBHOOK_SECRET_SHAPE.fullmatch(secret):
        raise BadInputError("TELEGRAM_WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
    protect_secret(secret)
    return {
        "listen": tg.webhook_listen,
        "port": tg.webhook_port,
        "url_path": parts.path.lstrip("/"),
        "webhook_url": url,
        "secret_token": secret,
    }


# --- outgoing requests: flood limits and retries ------------------------------------------------


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


# --- handlers -----------------------------------------------------------------------------------


@dataclass
class BotState:
    """What the handlers share: settings, the engine (swapped whole by /reindex), limits, recent answers."""

    settings: Settings
    tg: TelegramSettings
    engine: Engine | None = None
    limiter: state.RateLimiter = field(init=False)
    inline_limiter: state.RateLimiter = field(init=False)
    answers: state.AnswerStore = field(default_factory=state.AnswerStore)
    conversations: state.Conversations = field(default_factory=state.Conversations)
    reindex_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    reloader: IndexReloader = field(init=False)
    checked_at: float = 0.0  # when the index folder was last checked for a newer version

    def __post_init__(self) -> None:
        self.reloader = IndexReloader(self.settings.index)
        per_user, overall = self.tg.rate_limit_per_minute, self.tg.rate_limit_global_per_minute
        self.limiter = state.RateLimiter(per_user, overall)
        # Inline queries arrive as the user types, so they get a larger allowance of their own.
        self.inline_limiter = state.RateLimiter(per_user * 3, overall * 3)


class AddressedToBot(filters.MessageFilter):
    """A group message meant for the bot: it mentions the bot, or replies to one of its messages."""

    def filter(self, message: Message) -> bool:
        """True when the message mentions the bot by @username or replies to the bot."""
        bot = message.get_bot()
        replied = message.reply_to_message
        if replied is not None and replied.from_user is not None and replied.from_user.id == bot.id:
            return True
        return bool(bot.username) and mentions(message.text or "", bot.username)


def mentions(text: str, username: str) -> bool:
    """Whether `text` mentions @username (case-insensitive, as Telegram matches usernames)."""
    return re.search(rf"(?<!\w)@{re.escape(username)}(?!\w)", text, re.IGNORECASE) is not None


def strip_mention(text: str, username: str | None) -> str:
    """`text` without mentions of the bot, white space tidied: what is left is the question."""
    if username:
        text = re.sub(rf"(?<!\w)@{re.escape(username)}(?!\w)", " ", text, flags=re.IGNORECASE)
    return " ".join(text.split())


def command_argument(text: str | None) -> str:
    """What follows a command (`/ask@bot question` → `question`), line breaks kept."""
    parts = (text or "").split(maxsplit=1)
    return parts[1].strip() if len(parts) > 1 else ""


def has_words(text: str) -> bool:
    """Whether the text has a letter or digit in it (emoji and punctuation alone are not a question)."""
    return any(ch.isalnum() for ch in text)


def result_id(key: str) -> str:
    """A short inline result id (Telegram allows 1-64 bytes), unique per distinct key."""
    return hashlib.blake2b(key.encode("utf-8"), digest_size=16).hexdigest()


def answer_keyboard(key: str, more: bool) -> InlineKeyboardMarkup:
    """The buttons under an answer: More (when there is more) and 👍/👎."""
    row = [
        InlineKeyboardButton("👍", callback_data=state.encode(state.VOTE, key, state.UP)),
        InlineKeyboardButton("👎", callback_data=state.encode(state.VOTE, key, state.DOWN)),
    ]
    if more:
        row.insert(0, InlineKeyboardButton("More", callback_data=state.encode(state.MORE, key)))
    return InlineKeyboardMarkup([row])


def examples_keyboard() -> InlineKeyboardMarkup:
    """One button per example question."""
    return InlineKeyboardMarkup(
        [
            [InlineKeyboardButton(q, callback_data=state.encode(state.EXAMPLE, str(i)))]
            for i, q in enumerate(EXAMPLES)
        ]
    )


@contextlib.asynccontextmanager
async def typing(message: Message) -> AsyncIterator[None]:
    """Show "typing…" in the message's chat until the block ends, renewing it as Telegram lets it lapse."""

    async def keep_typing() -> None:
        while True:
            await message.reply_chat_action(ChatAction.TYPING)
            await asyncio.sleep(TYPING_RENEW_SECONDS)

    task = asyncio.create_task(keep_typing())
    try:
        yield
    finally:
        task.cancel()
        # A failed chat action only loses the indicator, never the answer; gather lets a
        # cancellation of the handler itself still propagate.
        (outcome,) = await asyncio.gather(task, return_exceptions=True)
        if isinstance(outcome, Exception):
            log.debug("typing indicator failed: %s", outcome)


Context = ContextTypes.DEFAULT_TYPE


class Handlers:
    """The bot's handlers, sharing one BotState."""

    def __init__(self, shared: BotState) -> None:
        self.state = shared
        self.page = shared.settings.top_k
        # "More" pages through citations fetched with the first answer, so it costs no second search.
        self.fetch = min(self.page * 3, 20)

    @property
    def engine(self) -> Engine:
        """The current engine (read once per question, so a /reindex swap never splits an answer)."""
        if self.state.engine is None:
            raise RuntimeError("the engine is not loaded yet")
        return self.state.engine

    def install(self, app: Application) -> None:
        """Register every handler on the application."""
        new = filters.UpdateType.MESSAGE  # edited messages, channel posts and the rest are ignored
        # Group -1 runs before the handlers of every update: an index written by `add` or
        # `index update` is answered from without a restart or /reindex.
        app.add_handler(TypeHandler(Update, self.reload_index), group=-1)
        private, groups = filters.ChatType.PRIVATE, filters.ChatType.GROUPS
        app.add_handler(CommandHandler("start", self.start, filters=new))
        app.add_handler(CommandHandler("help", self.help, filters=new))
        app.add_handler(CommandHandler("sources", self.sources, filters=new))
        app.add_handler(CommandHandler("ask", self.ask, filters=new))
        app.add_handler(CommandHandler("reindex", self.reindex, filters=new))
        app.add_handler(MessageHandler(new & private & filters.TEXT & ~filters.COMMAND, self.private_text))
        app.add_handler(
            MessageHandler(new & groups & filters.TEXT & ~filters.COMMAND & AddressedToBot(), self.group_text)
        )
        app.add_handler(MessageHandler(new & private & filters.COMMAND, self.unknown_command))
        app.add_handler(
            MessageHandler(new & private & ~filters.TEXT & ~filters.StatusUpdate.ALL, self.not_text)
        )
        app.add_handler(InlineQueryHandler(self.inline_query))
        app.add_handler(CallbackQueryHandler(self.button))
        app.add_error_handler(self.on_error)

    async def reload_index(self, update: object, context: Context) -> None:
        """Swap in a newer index when one was written, checking at most every `reload_seconds`."""
        engine = self.state.engine
        now = time.monotonic()
        if engine is None or now - self.state.checked_at < self.state.settings.reload_seconds:
            return
        self.state.checked_at = now
        try:
            fresh = await asyncio.to_thread(self.state.reloader.newer, engine)
        except Exception as exc:  # a failed check must never cost the update its answer
            log.warning("checking for a newer index failed: %s: %s", type(exc).__name__, exc)
            return
        if fresh is not None and self.state.engine is engine:  # not swapped by /reindex meanwhile
            self.state.engine = fresh

    async def post_init(self, app: Application) -> None:
        """Once the token is accepted: load the engine (building the index if needed), publish commands."""
        if self.state.engine is None:
            self.state.engine = await asyncio.to_thread(open_engine, self.state.settings, log.info)
        await app.bot.set_my_commands([BotCommand(name, text) for name, text in COMMANDS])
        log.info("@%s is ready, answering from %d articles", app.bot.username, len(self.engine.sources()))

    # --- commands -------------------------------------------------------------------------------

    async def start(self, update: Update, context: Context) -> None:
        """/start: what the bot knows, with example questions as buttons."""
        text = render.start_html(len(self.engine.sources()), context.bot.username)
        await update.message.reply_html(text, reply_markup=examples_keyboard())  # type: ignore[union-attr]

    async def help(self, update: Update, context: Context) -> None:
        """/help: how to ask in each kind of chat."""
        await update.message.reply_html(render.help_html(context.bot.username))  # type: ignore[union-attr]

    async def sources(self, update: Update, context: Context) -> None:
        """/sources: the articles, with outlet, date and link."""
        for n, chunk in enumerate(render.sources_messages(self.engine.sources())):
            await update.message.reply_html(chunk, do_quote=None if n == 0 else False)  # type: ignore[union-attr]

    async def ask(self, update: Update, context: Context) -> None:
        """/ask <question>: the way to ask in a group (works in private too)."""
        message: Message = update.message  # type: ignore[assignment]
        question = command_argument(message.text)
        if not question:
            await message.reply_html(render.ask_usage_html())
            return
        await self.answer_question(message, question, update.effective_user)

    async def unknown_command(self, update: Update, context: Context) -> None:
        """A command the bot does not have, in private (in groups it may be another bot's)."""
        await update.message.reply_html(render.unknown_command_html())  # type: ignore[union-attr]

    # --- questions ------------------------------------------------------------------------------

    async def private_text(self, update: Update, context: Context) -> None:
        """In private, any text is a question."""
        message: Message = update.message  # type: ignore[assignment]
        await self.answer_question(message, message.text or "", update.effective_user)

    async def group_text(self, update: Update, context: Context) -> None:
        """In a group, a message that mentions or replies to the bot is a question."""
        message: Message = update.message  # type: ignore[assignment]
        question = strip_mention(message.text or "", context.bot.username)
        if not question:
            await message.reply_html(render.ask_usage_html())
            return
        await self.answer_question(message, question, update.effective_user)

    async def not_text(self, update: Update, context: Context) -> None:
        """Stickers, photos, voice and the like, in private: say what the bot can read."""
        await update.message.reply_html(render.words_please_html())  # type: ignore[union-attr]

    async def answer_question(
        self,
        message: Message,
        text: str,
        user: User | None,
        quote: bool | None = None,
        heading: str | None = None,
    ) -> None:
        """Check the question and the rate limits, retrieve in a worker thread (typing meanwhile), reply."""
        try:
            question = validate_question(text)
        except BadInputError as exc:
            await message.reply_html(render.bad_question_html(str(exc)), do_quote=quote)
            return
        if not has_words(question):
            await message.reply_html(render.words_please_html(), do_quote=quote)
            return
        verdict = self.state.limiter.check(user.id if user else message.chat_id)
        if not verdict.allowed:
            if verdict.warn:
                await message.reply_html(
                    render.slow_down_html(verdict.wait, verdict.everyone), do_quote=quote
                )
            return
        engine = self.engine
        # Follow-ups only in private chats: in a group, the message before may be someone else's.
        private = message.chat.type == ChatType.PRIVATE
        previous = self.state.conversations.last(message.chat_id) if private else None
        async with typing(message):
            answer = await asyncio.to_thread(engine.answer, question, self.fetch, previous)
        if private:
            self.state.conversations.remember(message.chat_id, answer)
        await self.send_answer(message, answer, quote, heading)

    async def send_answer(
        self, message: Message, answer: Answer, quote: bool | None, heading: str | None
    ) -> None:
        """The first page of citations with its buttons, or the abstention."""
        if answer.abstained:
            await message.reply_html(render.not_covered_html(answer, heading), do_quote=quote)
            return
        key = self.state.answers.add(answer)
        shown = self.state.answers.get(key)
        assert shown is not None
        page, notes = shown.next_page(self.page)
        chunks = render.first_page_messages(answer, list(page), heading, list(notes))
        await self.send_chunks(message, chunks, key, shown.more, quote)

    async def send_citations(
        self,
        message: Message,
        citations: Iterable[Citation],
        key: str,
        more: bool,
        quote: bool | None,
        heading: str | None = None,
        notes: Iterable[str] = (),
    ) -> None:
        """Citations in as many messages as needed; the buttons go under the last one."""
        chunks = render.answer_messages(list(citations), heading, list(notes))
        await self.send_chunks(message, chunks, key, more, quote)

    async def send_chunks(
        self, message: Message, chunks: list[str], key: str, more: bool, quote: bool | None
    ) -> None:
        """Messages in order, replying to `message`; the buttons go under the last one."""
        for n, chunk in enumerate(chunks):
            last = n == len(chunks) - 1
            await message.reply_html(
                chunk,
                do_quote=quote if n == 0 else False,
                reply_markup=answer_keyboard(key, more) if last else None,
            )

    # --- inline mode ----------------------------------------------------------------------------

    async def inline_query(self, update: Update, context: Context) -> None:
        """`@bot question` in any chat: one result card per citation."""
        query = update.inline_query
        assert query is not None
        text = query.query.strip()
        if not has_words(text) or not self.state.inline_limiter.check(query.from_user.id).allowed:
            await query.answer([], cache_time=0, is_personal=True)
            return
        try:
            question = validate_question(text)
        except BadInputError:
            await query.answer([], cache_time=0, is_personal=True)
            return
        answer = await asyncio.to_thread(self.engine.answer, question, self.fetch)
        results = [
            InlineQueryResultArticle(
                id=result_id(card.key),
                title=card.title,
                description=card.description,
                input_message_content=InputTextMessageContent(card.message, parse_mode=ParseMode.HTML),
            )
            for card in render.inline_cards(answer)[:MAX_INLINE_RESULTS]
        ]
        await query.answer(results, cache_time=INLINE_CACHE_SECONDS)

    # --- buttons --------------------------------------------------------------------------------

    async def button(self, update: Update, context: Context) -> None:
        """More, 👍/👎 and example buttons; stale or unknown ones get a short note instead of an error."""
        query = update.callback_query
        assert query is not None
        data = state.decode(query.data)
        message = query.message if query.message is not None and query.message.is_accessible else None
        if data is None:
            await query.answer("Sorry, I don't know that button.")
            return
        if data.action == state.EXAMPLE:
            index = int(data.key)
            if index >= len(EXAMPLES) or not isinstance(message, Message):
                await query.answer("Sorry, I don't know that button.")
                return
            await query.answer()
            question = EXAMPLES[index]
            await self.answer_question(
                message, question, query.from_user, False, render.question_html(question)
            )
            return
        shown = self.state.answers.get(data.key)
        if shown is None:
            await query.answer("This answer is too old for buttons: please ask again.")
            return
        if data.action == state.VOTE:
            if shown.votes.get(query.from_user.id) != data.value:
                shown.votes[query.from_user.id] = data.value
                cited = ",".join(c.passage_id for c in shown.answer.citations if c.n in shown.shown)
                feedback_log.info(
                    "feedback %s question=%r cited=%s", data.value, shown.answer.question, cited
                )
            await query.answer("Thanks for the feedback!")
            return
        await self.more(query, shown, data.key, message)

    async def more(self, query: CallbackQuery, shown: state.Shown, key: str, message: Message | None) -> None:
        """The next page of citations of a remembered answer, as a new message."""
        if not shown.more or not isinstance(message, Message):
            await query.answer(
                "That's all the articles say about it." if not shown.more else "Please ask again."
            )
            return
        page, notes = shown.next_page(self.page)  # before any await, so a double tap cannot repeat a page
        first_tap = message.message_id not in shown.more_dropped
        shown.more_dropped.add(message.message_id)
        await query.answer()
        await self.send_citations(message, page, key, shown.more, False, None, notes)
        if not first_tap:
            return
        try:
            await query.edit_message_reply_markup(answer_keyboard(key, more=False))
        except BadRequest as exc:  # e.g. the old message is gone or already updated
            log.debug("could not drop the More button: %s", exc)

    # --- admin ----------------------------------------------------------------------------------

    async def reindex(self, update: Update, context: Context) -> None:
        """/reindex (admins only): update the index from the corpus and answer from it, without a restart."""
        message: Message = update.message  # type: ignore[assignment]
        user = update.effective_user
        if user is None or user.id not in self.state.tg.admin_ids:
            log.warning("refused /reindex from user %s", user.id if user else "unknown")
            await message.reply_html(render.not_allowed_html())
            return
        if self.state.reindex_lock.locked():
            await message.reply_html(render.reindex_busy_html())
            return
        async with self.state.reindex_lock:
            note = await message.reply_html(render.reindex_started_html())
            try:
                report, engine = await asyncio.to_thread(reindex, self.state.settings)
            except ProtestBotError as exc:
                await note.edit_text(render.reindex_failed_html(str(exc)))
                return
            self.state.engine = engine  # one reference swap: questions in flight keep the old engine
            await note.edit_text(render.reindex_done_html(report.articles, report.passages, describe(report)))

    # --- errors ---------------------------------------------------------------------------------

    async def on_error(self, update: object, context: Context) -> None:
        """Log the failure (token-free), then tell the user something went wrong, if there is a user."""
        log.error("update %s failed", _describe_update(update), exc_info=context.error)
        if not isinstance(update, Update):
            return
        try:
            if update.callback_query is not None:
                await update.callback_query.answer(render.something_went_wrong_html())
            elif update.message is not None:
                await update.message.reply_html(render.something_went_wrong_html())
        except TelegramError as exc:
            log.error("could not tell the user about the failure: %s", exc)


def _describe_update(update: object) -> str:
    if isinstance(update, Update):
        kinds = [
            name for name in ("message", "callback_query", "inline_query") if getattr(update, name, None)
        ]
        return f"{update.update_id} ({', '.join(kinds) or 'other'})"
    return type(update).__name__


def reindex(settings: Settings) -> tuple[UpdateReport, Engine]:
    """Update the index from the corpus, then load an engine over it (blocking: run it in a thread)."""
    from bot.embed import load_embedder

    report = update_from_settings(settings, load_embedder(settings.model))
    return report, open_engine(settings, notify=log.info)


def describe(report: UpdateReport) -> str:
    """What changed in an update, in a few words."""
    return describe_changes(report) or "no article changes"


# --- wiring -------------------------------------------------------------------------------------


def build_application(
    settings: Settings,
    tg: TelegramSettings,
    engine: Engine | None = None,
    network_retries: int = NETWORK_RETRIES,
    backoff: float = NETWORK_BACKOFF_SECONDS,
) -> Application:
    """The PTB Application with every handler; without `engine`, one is opened once the token is accepted."""
    token = bot_token(tg)
    protect_secret(token)
    shorten_polling_errors()
    handlers = Handlers(BotState(settings, tg, engine))
    app = (
        ApplicationBuilder()
        .token(token)
        .base_url(api_base_url(tg))
        .concurrent_updates(True)
        .rate_limiter(RetryingRateLimiter(network_retries=network_retries, backoff=backoff))
        .defaults(
            Defaults(
                parse_mode=ParseMode.HTML,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
                allow_sending_without_reply=True,
            )
        )
        .post_init(handlers.post_init)
        .build()
    )
    handlers.install(app)
    return app


def run(settings: Settings, tg: TelegramSettings) -> None:
    """Run the bot until Ctrl-C or SIGTERM: long polling, or a webhook server when a webhook URL is set."""
    _configure_logging()
    # run_polling/run_webhook close their event loop when they return: a fresh one lets run() be
    # called again in the same process (the CLI tests do).
    asyncio.set_event_loop(asyncio.new_event_loop())
    app = build_application(settings, tg)
    where = redact(api_base_url(tg))
    try:
        if tg.webhook_url:
            options = webhook_options(tg)
            log.info("starting: webhook %s on %s:%s", tg.webhook_url, tg.webhook_listen, tg.webhook_port)
            app.run_webhook(**options, allowed_updates=list(ALLOWED_UPDATES))
        else:
            log.info("starting: long polling %s", where)
            app.run_polling(allowed_updates=list(ALLOWED_UPDATES))
    except InvalidToken:
        raise TelegramStartError(
            f"the Bot API at {where} rejected TELEGRAM_BOT_TOKEN: check it with @BotFather"
        ) from None
    except NetworkError as exc:
        raise TelegramStartError(f"cannot reach the Bot API at {where}: {redact(str(exc))}") from None
    except TelegramError as exc:
        raise TelegramStartError(
            f"the Bot API at {where} refused to start the bot: {redact(str(exc))}"
        ) from None
    except ProtestBotError:
        raise
    except Exception as exc:
        if redact(str(exc)) == str(exc):
            raise
        raise TelegramStartError(f"unexpected {type(exc).__name__}: {redact(str(exc))}") from None


def _configure_logging() -> None:
    """A long-running bot logs what it does (and feedback) at INFO; httpx stays quiet: URLs hold the token."""
    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        logging.getLogger("bot").setLevel(logging.INFO)
    httpx = logging.getLogger("httpx")
    httpx.setLevel(max(httpx.getEffectiveLevel(), logging.WARNING))
