"""The buttons under answers and under /start: More, 👍/👎 and the example questions.

A button's answer is read and changed in the shared state in one atomic step, so a More tap or a
vote works on whichever replica it reaches, and a double tap never repeats a page. When the state
cannot be reached (Redis down) the button gets a polite note instead of an error.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from telegram import CallbackQuery, Message, Update
from telegram.error import BadRequest

from bot.models import Citation
from bot.shared_state import StateUnavailable
from bot.telegram import render, state
from bot.telegram.chat import EXAMPLES, answer_keyboard

if TYPE_CHECKING:
    from telegram import User

    from bot.telegram.handlers import BotState, Context

log = logging.getLogger(__name__)
feedback_log = logging.getLogger("bot.feedback")

UNKNOWN_BUTTON = "Sorry, I don't know that button."
TOO_OLD = "This answer is too old for buttons: please ask again."
CANNOT_REACH = "I can't look that answer up right now: please try again in a moment."
Page = tuple[list[Citation], list[str], bool]
T = TypeVar("T")


class Buttons:
    """Button handlers; mixed into `Handlers`, whose questions and sending they use."""

    shared: BotState
    page_size: int
    answer_question: Callable[..., Awaitable[None]]
    send_citations: Callable[..., Awaitable[None]]

    async def button(self, update: Update, context: Context) -> None:
        """More, 👍/👎 and example buttons; stale or unknown ones get a short note instead of an error."""
        query = update.callback_query
        assert query is not None
        data = state.decode(query.data)
        message = query.message if query.message is not None and query.message.is_accessible else None
        if data is None:
            await query.answer(UNKNOWN_BUTTON)
        elif data.action == state.EXAMPLE:
            await self.example(query, data, message)
        elif data.action == state.VOTE:
            await self.vote(query, data)
        else:
            await self.more(query, data.key, message)

    async def example(self, query: CallbackQuery, data: state.ButtonData, message: object) -> None:
        """An example question of /start, answered under its own heading."""
        index = int(data.key)
        if index >= len(EXAMPLES) or not isinstance(message, Message):
            await query.answer(UNKNOWN_BUTTON)
            return
        await query.answer()
        question = EXAMPLES[index]
        await self.answer_question(message, question, query.from_user, False, render.question_html(question))

    async def vote(self, query: CallbackQuery, data: state.ButtonData) -> None:
        """👍/👎: logged once per user and answer (a changed vote is logged again)."""
        user: User = query.from_user
        record = functools.partial(_record_vote, user_id=user.id, value=data.value)
        result = await self._update_answer(query, data.key, record)
        if result is None:
            return
        shown, changed = result
        if changed:
            cited = ",".join(c.passage_id for c in shown.answer.citations if c.n in shown.shown)
            feedback_log.info("feedback %s question=%r cited=%s", data.value, shown.answer.question, cited)
        await query.answer("Thanks for the feedback!")

    async def more(self, query: CallbackQuery, key: str, message: object) -> None:
        """The next page of citations of a remembered answer, as a new message."""
        target = message if isinstance(message, Message) else None
        take = functools.partial(_take_page, size=self.page_size, message=target)
        result = await self._update_answer(query, key, take)
        if result is None:
            return
        shown, page = result
        if page is None or target is None:
            done = "That's all the articles say about it."
            await query.answer(done if not shown.more else "Please ask again.")
            return
        citations, notes, first_tap = page
        await query.answer()
        await self.send_citations(target, citations, key, shown.more, False, None, notes)
        if not first_tap:
            return
        try:
            await query.edit_message_reply_markup(answer_keyboard(key, more=False))
        except BadRequest as exc:  # e.g. the old message is gone or already updated
            log.debug("could not drop the More button: %s", exc)

    async def _update_answer(
        self, query: CallbackQuery, key: str, change: Callable[[state.Shown], T]
    ) -> tuple[state.Shown, T] | None:
        """(the answer, what `change` returned) in one atomic step; None once the tap has been told
        why not (the state cannot be reached, or the answer is forgotten)."""
        try:
            result = await self.shared.state.update_answer(key, change)
        except StateUnavailable:
            await query.answer(CANNOT_REACH)
            return None
        if result is None:
            await query.answer(TOO_OLD)
        return result


def _record_vote(shown: state.Shown, user_id: int, value: str) -> bool:
    """Record a vote; whether it is new or changed."""
    if shown.votes.get(user_id) == value:
        return False
    shown.votes[user_id] = value
    return True


def _take_page(shown: state.Shown, size: int, message: Message | None) -> Page | None:
    """The next page, marked shown in the same step that reads it (so a double tap cannot repeat it),
    and whether this is the first tap under `message`; None when there is nothing to show."""
    if not shown.more or message is None:
        return None
    page, notes = shown.next_page(size)
    first_tap = message.message_id not in shown.more_dropped
    # The button was (or is about to be) taken away: a second tap must not repeat the edit, which
    # Telegram refuses ("message is not modified").
    shown.more_dropped.add(message.message_id)
    return page, notes, first_tap
