"""The bot's handlers, one short method per kind of update, like python-telegram-bot's examples:
each parses, calls the engine (in a worker thread, so one question never blocks another), renders
and sends."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from telegram import (
    BotCommand,
    InlineQueryResultArticle,
    InputTextMessageContent,
    Message,
    Update,
    User,
)
from telegram.constants import ChatType, ParseMode
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    InlineQueryHandler,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot.config import Settings, TelegramSettings
from bot.engine import Engine, validate_question
from bot.errors import BadInputError, ProtestBotError
from bot.index_reload import IndexReloader
from bot.indexer import UpdateReport, describe_changes, update_from_settings
from bot.models import Answer, Citation
from bot.shared_state import Limiter, MemoryState, SharedState
from bot.startup import open_engine
from bot.telegram import render, state
from bot.telegram.buttons import UNKNOWN_BUTTON, Buttons
from bot.telegram.chat import (
    AddressedToBot,
    answer_keyboard,
    command_argument,
    examples_keyboard,
    has_words,
    result_id,
    strip_mention,
    typing,
)

log = logging.getLogger(__name__)

COMMANDS = (
    ("start", "What I know, with example questions"),
    ("ask", "Ask a question (in groups)"),
    ("sources", "The articles I quote"),
    ("help", "How to ask"),
)
__all__ = ["UNKNOWN_BUTTON", "BotState", "Handlers"]
# Held while /reindex rebuilds; a rebuild that takes longer belongs in a batch job (docs/SCALING.md).
REINDEX_LOCK_SECONDS = 3600
MAX_INLINE_RESULTS = 50
INLINE_CACHE_SECONDS = 300
Context = ContextTypes.DEFAULT_TYPE


@dataclass
class BotState:
    """What the handlers share: settings, the engine (swapped whole by /reindex), and the state that
    replicas share (limits, recent answers, follow-ups: in memory, or in Redis)."""

    settings: Settings
    tg: TelegramSettings
    engine: Engine | None = None
    state: SharedState = field(default_factory=MemoryState)
    limiter: Limiter = field(init=False)
    inline_limiter: Limiter = field(init=False)
    reloader: IndexReloader = field(init=False)
    checked_at: float = 0.0  # when the index folder was last checked for a newer version

    def __post_init__(self) -> None:
        self.reloader = IndexReloader(self.settings.index)
        per_user, overall = self.tg.rate_limit_per_minute, self.tg.rate_limit_global_per_minute
        self.limiter = self.state.limiter("tg", per_user, overall)
        # Inline queries arrive as the user types, so they get a larger allowance of their own.
        self.inline_limiter = self.state.limiter("inline", per_user * 3, overall * 3)


class Handlers(Buttons):
    """The bot's handlers, sharing one BotState (`self.shared`); the buttons' are in `Buttons`."""

    def __init__(self, shared: BotState) -> None:
        self.shared = shared
        self.page_size = shared.settings.top_k
        # "More" pages through citations fetched with the first answer, so it costs no second search.
        self.citations_per_answer = min(self.page_size * 3, 20)

    @property
    def engine(self) -> Engine:
        """The current engine (read once per question, so a /reindex swap never splits an answer)."""
        if self.shared.engine is None:
            raise RuntimeError("the engine is not loaded yet")
        return self.shared.engine

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
        engine = self.shared.engine
        now = time.monotonic()
        if engine is None or now - self.shared.checked_at < self.shared.settings.reload_seconds:
            return
        self.shared.checked_at = now
        try:
            fresh = await asyncio.to_thread(self.shared.reloader.newer, engine)
        except Exception as exc:  # a failed check must never cost the update its answer
            log.warning("checking for a newer index failed: %s: %s", type(exc).__name__, exc)
            return
        if fresh is not None and self.shared.engine is engine:  # not swapped by /reindex meanwhile
            self.shared.engine = fresh

    async def post_init(self, app: Application) -> None:
        """Once the token is accepted: load the engine (building the index if needed), publish commands."""
        if self.shared.engine is None:
            self.shared.engine = await asyncio.to_thread(open_engine, self.shared.settings, log.info)
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
        quote_question: bool | None = None,
        heading: str | None = None,
    ) -> None:
        """Check the question and the rate limits, retrieve in a worker thread (typing meanwhile), reply."""
        try:
            question = validate_question(text)
        except BadInputError as exc:
            await message.reply_html(render.bad_question_html(str(exc)), do_quote=quote_question)
            return
        if not has_words(question):
            await message.reply_html(render.words_please_html(), do_quote=quote_question)
            return
        verdict = await self.shared.limiter.check(user.id if user else message.chat_id)
        if not verdict.allowed:
            if verdict.warn:
                await message.reply_html(
                    render.slow_down_html(verdict.wait, verdict.everyone), do_quote=quote_question
                )
            return
        engine = self.engine
        # Follow-ups only in private chats: in a group, the message before may be someone else's.
        private = message.chat.type == ChatType.PRIVATE
        previous = await self.shared.state.last_answer(message.chat_id) if private else None
        async with typing(message):
            answer = await asyncio.to_thread(engine.answer, question, self.citations_per_answer, previous)
        if private:
            await self.shared.state.remember(message.chat_id, answer)
        await self.send_answer(message, answer, quote_question, heading)

    async def send_answer(
        self, message: Message, answer: Answer, quote_question: bool | None, heading: str | None
    ) -> None:
        """The first page of citations with its buttons, or the abstention."""
        if answer.abstained:
            await message.reply_html(render.not_covered_html(answer, heading), do_quote=quote_question)
            return
        shown = state.Shown(answer)
        page, notes = shown.next_page(self.page_size)
        key = await self.shared.state.add_answer(shown)  # stored with its first page marked shown
        chunks = render.first_page_messages(answer, list(page), heading, list(notes))
        await self.send_chunks(message, chunks, key, shown.more, quote_question)

    async def send_citations(
        self,
        message: Message,
        citations: Iterable[Citation],
        key: str,
        more: bool,
        quote_question: bool | None,
        heading: str | None = None,
        notes: Iterable[str] = (),
    ) -> None:
        """Citations in as many messages as needed; the buttons go under the last one."""
        chunks = render.answer_messages(list(citations), heading, list(notes))
        await self.send_chunks(message, chunks, key, more, quote_question)

    async def send_chunks(
        self, message: Message, chunks: list[str], key: str, more: bool, quote_question: bool | None
    ) -> None:
        """Messages in order, replying to `message`; the buttons go under the last one."""
        for n, chunk in enumerate(chunks):
            last = n == len(chunks) - 1
            await message.reply_html(
                chunk,
                do_quote=quote_question if n == 0 else False,
                reply_markup=answer_keyboard(key, more) if last else None,
            )

    # --- inline mode ----------------------------------------------------------------------------

    async def inline_query(self, update: Update, context: Context) -> None:
        """`@bot question` in any chat: one result card per citation."""
        query = update.inline_query
        assert query is not None
        text = query.query.strip()
        if not has_words(text) or not (await self.shared.inline_limiter.check(query.from_user.id)).allowed:
            await query.answer([], cache_time=0, is_personal=True)
            return
        try:
            question = validate_question(text)
        except BadInputError:
            await query.answer([], cache_time=0, is_personal=True)
            return
        answer = await asyncio.to_thread(self.engine.answer, question, self.citations_per_answer)
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

    # --- admin ----------------------------------------------------------------------------------

    async def reindex(self, update: Update, context: Context) -> None:
        """/reindex (admins only): update the index from the corpus and answer from it, without a restart."""
        message: Message = update.message  # type: ignore[assignment]
        user = update.effective_user
        if user is None or user.id not in self.shared.tg.admin_ids:
            log.warning("refused /reindex from user %s", user.id if user else "unknown")
            await message.reply_html(render.not_allowed_html())
            return
        # Across replicas (in Redis) two admins cannot rebuild at once; the other replicas then load
        # the new index through their hot reload.
        lock = await self.shared.state.try_lock("reindex", REINDEX_LOCK_SECONDS)
        if lock is None:
            await message.reply_html(render.reindex_busy_html())
            return
        try:
            note = await message.reply_html(render.reindex_started_html())
            try:
                report, engine = await asyncio.to_thread(update_and_reopen, self.shared.settings)
            except ProtestBotError as exc:
                await note.edit_text(render.reindex_failed_html(str(exc)))
                return
            self.shared.engine = engine  # one reference swap: questions in flight keep the old engine
            done = render.reindex_done_html(report.articles, report.passages, summarize_changes(report))
            await note.edit_text(done)
        finally:
            await self.shared.state.unlock("reindex", lock)

    # --- errors ---------------------------------------------------------------------------------

    async def on_error(self, update: object, context: Context) -> None:
        """Log the failure (token-free), then tell the user something went wrong, if there is a user."""
        log.error("update %s failed", _update_kind(update), exc_info=context.error)
        if not isinstance(update, Update):
            return
        try:
            if update.callback_query is not None:
                await update.callback_query.answer(render.something_went_wrong_html())
            elif update.message is not None:
                await update.message.reply_html(render.something_went_wrong_html())
        except TelegramError as exc:
            log.error("could not tell the user about the failure: %s", exc)


def _update_kind(update: object) -> str:
    if isinstance(update, Update):
        kinds = [
            name for name in ("message", "callback_query", "inline_query") if getattr(update, name, None)
        ]
        return f"{update.update_id} ({', '.join(kinds) or 'other'})"
    return type(update).__name__


def update_and_reopen(settings: Settings) -> tuple[UpdateReport, Engine]:
    """Update the index from the corpus, then load an engine over it (blocking: run it in a thread)."""
    from bot.embed import load_embedder

    report = update_from_settings(settings, load_embedder(settings.model, settings.batch_size))
    return report, open_engine(settings, notify=log.info)


def summarize_changes(report: UpdateReport) -> str:
    """What changed in an update, in a few words."""
    return describe_changes(report) or "no article changes"
