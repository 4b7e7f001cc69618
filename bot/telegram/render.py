"""Telegram HTML for answers, sources and the bot's own words.

Everything that comes from outside (questions, quotes, titles, urls) is escaped. Replies are built
from blocks (one per citation or source) and packed into messages of at most 4096 UTF-16 units, so
a reply is only ever split between blocks, never inside a tag. This module does not import telegram.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from urllib.parse import urlsplit

from bot.models import Answer, Citation, Source
from bot.render import headline_parts, source_label

# Telegram's limit is 4096 UTF-16 units of *parsed* text; we measure the HTML source, which is never
# shorter, so a message that fits here fits there.
MESSAGE_LIMIT = 4096
INLINE_TITLE_LIMIT = 100
INLINE_DESCRIPTION_LIMIT = 200
CALLBACK_ANSWER_LIMIT = 200
# A declined question's closest quotes are shown shortened: they are a pointer, not an answer.
RELATED_QUOTE_LIMIT = 300
BLOCK_SEPARATOR = "\n\n"
ELLIPSIS = "…"

TOPIC = "the June 2018 Amazon employee protest"


def utf16_len(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units (an emoji outside the BMP counts two)."""
    return len(text.encode("utf-16-le")) // 2


def h(text: str) -> str:
    """Escape text for Telegram HTML (&, <, > and quotes)."""
    return escape(text, quote=True)


def shorten(text: str, limit: int) -> str:
    """`text` cut at a word boundary to at most `limit` characters, with an ellipsis when cut."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 1, 0)]
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:") + ELLIPSIS


def _is_web_url(url: str | None) -> bool:
    if not url:
        return False
    parts = urlsplit(url.strip())
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def source_html(source: Source) -> str:
    """The source's label, linked to the article when its url is known."""
    label = h(source_label(source))
    if _is_web_url(source.url):
        return f'<a href="{h(source.url.strip())}">{label}</a>'  # type: ignore[union-attr]
    return label


def citation_html(citation: Citation, quote_limit: int | None = None) -> str:
    """One numbered citation: its sources, then the sentence that answers, quoted."""
    quote = citation.quote if quote_limit is None else shorten(citation.quote, quote_limit)
    first, *others = citation.sources or (None,)
    head = f"<b>[{citation.n}]</b>" + (f" {source_html(first)}" if first else "")
    lines = [head]
    # No indent: Telegram shows leading spaces as they are, a ragged gap in a group's reply.
    lines += [f"• also in {source_html(other)}" for other in others]
    lines.append(f"<blockquote>{h(quote)}</blockquote>")
    return "\n".join(lines)


def fit(render: Callable[[int | None], str], limit: int = MESSAGE_LIMIT) -> str:
    """`render(None)`, or `render(n)` with the largest quote budget n that fits `limit`."""
    block = render(None)
    budget = len(block)
    while utf16_len(block) > limit and budget > 1:
        budget = budget * 3 // 4
        block = render(budget)
    return block


def pack(blocks: Sequence[str], limit: int = MESSAGE_LIMIT) -> list[str]:
    """Blocks joined into as few messages as fit `limit`; a message boundary always falls between blocks."""
    messages: list[str] = []
    current = ""
    for block in blocks:
        if utf16_len(block) > limit:
            raise ValueError("a block is longer than a message: fit it first")
        joined = f"{current}{BLOCK_SEPARATOR}{block}" if current else block
        if utf16_len(joined) <= limit:
            current = joined
        else:
            messages.append(current)
            current = block
    if current:
        messages.append(current)
    return messages


def question_html(question: str) -> str:
    """The question, as a heading over an answer that is shown away from it (examples, inline cards)."""
    return f"<b>Q:</b> <i>{h(shorten(question, 300))}</i>"


def answer_messages(
    citations: Sequence[Citation], heading: str | None = None, notes: Sequence[str] = ()
) -> list[str]:
    """The citations as numbered, quoted blocks, then the engine's notes (e.g. sources that disagree)."""
    blocks = [heading] if heading else []
    blocks += [fit(lambda budget, c=c: citation_html(c, budget)) for c in citations]
    blocks += [f"<i>{h(shorten(note, 1000))}</i>" for note in notes]
    return pack(blocks)


def first_page_messages(
    answer: Answer, citations: Sequence[Citation], heading: str | None = None, notes: Sequence[str] = ()
) -> list[str]:
    """An answer's first page: the answer itself first (`headline_html`), then its citations."""
    heading = "\n".join(part for part in (heading, headline_html(answer)) if part)
    return answer_messages(citations, heading, notes)


def headline_html(answer: Answer, limit: int = 600) -> str:
    """The answer first, in the source's own words: the first quote, its answering words in bold."""
    before, bold, after = headline_parts(answer)
    if len(before) + len(bold) + len(after) > limit:
        return f"“{h(shorten(before + bold + after, limit))}” <b>[{answer.citations[0].n}]</b>"
    bold_html = f"<b>{h(bold)}</b>" if bold else ""
    return f"“{h(before)}{bold_html}{h(after)}” <b>[{answer.citations[0].n}]</b>"


def not_covered_html(answer: Answer, heading: str | None = None) -> str:
    """The engine's honest abstention, with a pointer to what the bot does know."""
    lines = [heading] if heading else []
    lines.append(f"{h(answer.summary)} I only know what the articles say — see /sources, or try other words.")
    if answer.related:
        lines.append("<i>Closest they come (not an answer):</i>")
        for citation in answer.related:
            where = "; ".join(source_html(s) for s in citation.sources)
            lines.append(f"“{h(shorten(citation.quote, RELATED_QUOTE_LIMIT))}”\n— {where}")
    return BLOCK_SEPARATOR.join(lines)


def sources_messages(sources: Sequence[Source]) -> list[str]:
    """The articles the bot answers from: outlet, date and link, numbered."""
    if not sources:
        return ["No articles are indexed yet."]
    heading = f"<b>I answer from these {len(sources)} articles:</b>"
    return pack([heading] + [f"{n}. {source_html(s)}" for n, s in enumerate(sources, start=1)])


@dataclass(frozen=True)
class InlineCard:
    """One inline-mode result: what the picker shows, and the message it posts."""

    key: str
    title: str
    description: str
    message: str


def inline_cards(answer: Answer) -> list[InlineCard]:
    """One card per citation (the question heads each posted message), or one saying the articles don't."""
    heading = question_html(answer.question)
    if answer.abstained:
        return [
            InlineCard(
                key="none",
                title=shorten(answer.summary, INLINE_TITLE_LIMIT),
                description=shorten(
                    f"Nothing in the articles about: {answer.question}", INLINE_DESCRIPTION_LIMIT
                ),
                message=not_covered_html(answer, heading),
            )
        ]
    cards = []
    for citation in answer.citations:
        source = citation.sources[0] if citation.sources else None
        title = f"[{citation.n}] " + (source_label(source) if source else "Citation")
        message = fit(lambda budget, c=citation: heading + BLOCK_SEPARATOR + citation_html(c, budget))
        cards.append(
            InlineCard(
                key=f"{citation.n}:{citation.passage_id}",
                title=shorten(title, INLINE_TITLE_LIMIT),
                description=shorten(citation.quote, INLINE_DESCRIPTION_LIMIT),
                message=message,
            )
        )
    return cards


# --- the bot's own words ------------------------------------------------------------------------


def start_html(articles: int, username: str | None) -> str:
    """What the bot is for, what it knows, and how to ask."""
    inline = f" In any chat, type <code>@{h(username)} your question</code>." if username else ""
    return (
        f"<b>Hi! I answer questions about {TOPIC}</b>: the letter asking Jeff Bezos to stop selling "
        "Rekognition face recognition to police and to stop hosting Palantir on AWS.\n\n"
        f"I quote the {articles} news articles I know (see /sources) and number every citation. "
        "When the articles don't say, I tell you so.\n\n"
        f"Ask me anything in words, or tap an example.{inline}"
    )


def help_html(username: str | None) -> str:
    """How to ask in each kind of chat, and the commands."""
    mention = f"@{h(username)}" if username else "me"
    inline = (
        f"• <b>Any chat</b>: type <code>@{h(username)} your question</code> and pick a quote to post.\n"
        if username
        else ""
    )
    return (
        f"<b>How to ask about {TOPIC}</b>\n"
        "• <b>Here, in private</b>: just send your question.\n"
        f"• <b>In a group</b>: <code>/ask your question</code>, mention {mention}, or reply to one of my "
        "messages. I ignore everything else.\n"
        f"{inline}\n"
        "Under an answer, <b>More</b> shows further citations and 👍/👎 tell me whether it helped.\n\n"
        "/start — what I know, with example questions\n"
        "/ask — ask a question (in groups)\n"
        "/sources — the articles I quote\n"
        "/help — this message"
    )


def ask_usage_html() -> str:
    """What to do after a bare /ask."""
    return "Ask like this: <code>/ask Who did the employees write to?</code>"


def words_please_html() -> str:
    """The reply to a message with no words in it (emoji, stickers, photos, voice)."""
    return f"I can only read questions written in words. Ask me something about {TOPIC}, or see /help."


def unknown_command_html() -> str:
    """The reply to a command the bot does not have."""
    return "I don't know that command. See /help."


def bad_question_html(reason: str) -> str:
    """Why a question cannot be used (the engine's message, which is safe to show)."""
    reason = reason[:1].upper() + reason[1:]
    return f"{h(reason)}."


def slow_down_html(wait_seconds: float, everyone: bool) -> str:
    """A polite rate-limit notice."""
    seconds = max(1, round(wait_seconds))
    if everyone:
        return f"I'm answering a lot of questions right now. Please try again in {seconds} s."
    return f"You're asking faster than I can answer. Please wait {seconds} s and ask again."


def something_went_wrong_html() -> str:
    """The reply when a handler fails (the details are in the log, never in the chat)."""
    return "Sorry, something went wrong on my side. Please try again in a moment."


def not_allowed_html() -> str:
    """The refusal of an admin command."""
    return "Sorry, only the bot's admins can do that."


def reindex_started_html() -> str:
    """Shown while /reindex runs."""
    return "Updating the index…"


def reindex_busy_html() -> str:
    """Shown when /reindex is asked for while one is running."""
    return "The index is already being updated."


def reindex_done_html(articles: int, passages: int, changes: str) -> str:
    """What /reindex did."""
    return f"Index updated: {articles} articles, {passages} passages ({h(changes)}). Now answering from it."


def reindex_failed_html(reason: str) -> str:
    """Why /reindex failed; the bot keeps answering from the previous index."""
    return f"The index could not be updated: {h(reason)}. I keep answering from the previous one."
