"""What the bot reads from a chat and shows in it besides rendered HTML: who a group message is for,
the question in a command, the buttons, the typing indicator, inline result ids."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import AsyncIterator

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message
from telegram.constants import ChatAction
from telegram.ext import filters

from bot.telegram import state

log = logging.getLogger(__name__)

# Questions offered as buttons by /start; each is answered by the shipped articles (a test checks).
EXAMPLES = (
    "What did Amazon employees demand from Jeff Bezos?",
    "What does Palantir run on?",
    "Why did the workers mention IBM?",
)
TYPING_RENEW_SECONDS = 4.5  # Telegram shows "typing…" for 5 s


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
