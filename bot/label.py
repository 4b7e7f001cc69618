"""A readable label for every article, for display only.

Citations need something a reader recognizes. The title is best; an article without one in its
metadata often prints its own heading on the first line ("Amazon employees"); failing that, its
first words say what it is. The label is derived text, never metadata: it is not written back into
the front matter, and `title` stays empty where the article shows none.
"""

from __future__ import annotations

from bot.clean import clean_lines, is_chrome, is_prose

HEADING_MAX_WORDS = 12
FIRST_WORDS_CHARACTERS = 60
ELLIPSIS = "…"


def article_label(title: str | None, raw: str) -> str:
    """The title; else the article's first heading line; else its first words."""
    if title:
        return title
    return first_heading(raw) or first_words(" ".join(clean_lines(raw)[:1]))


def first_heading(raw: str) -> str:
    """A heading-shaped line before the article's first sentence: short, capitalized, not chrome."""
    for line in (line.strip() for line in raw.splitlines()):
        if not line or is_chrome(line):
            continue
        if is_prose(line):
            return ""  # the running text began: the article has no heading of its own
        if len(line.split()) <= HEADING_MAX_WORDS and line[0].isupper():
            return line
    return ""


def first_words(text: str, limit: int = FIRST_WORDS_CHARACTERS) -> str:
    """`text` cut at a word boundary to at most `limit` characters, an ellipsis marking the cut."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:") + ELLIPSIS
