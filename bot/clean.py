"""Site chrome removal: login prompts, share and related blocks, tag lines, bylines, headings.

Rules look at the shape of a line and at patterns that are chrome on any news site, never at a
particular file. Kept lines are not edited, only dropped, so every sentence of the cleaned text
stays verbatim in the article file.
"""

from __future__ import annotations

import re

# Lines that are chrome wherever they appear, when they are short (a real sentence may mention
# "sign up" in passing; a 3-word line saying it is a button). Login prompts have no word boundary
# check because scraped pages glue buttons together ("Remember meForgot password?").
_CHROME_SHORT = re.compile(
    r"""^(?:
        .*(?:forgot\s*(?:your\s*)?password|remember\s*me|log\s*in\s+with|sign\s*in\s+with|
            continue\s+with\s+(?:google|facebook|apple|twitter)).*
      | (?:log\s*in|sign\s*in|sign\s*up|register|subscribe|logout|log\s*out)\b.*
      | (?:read|see)\s+(?:also|more)\b.*
      | more\s+(?:from|in|about|news|stories|on|like\s+this)\b.*
      | (?:you\s+m(?:ay|ight)\s+(?:also\s+)?like|related(?:\s+\w+)?|recommended(?:\s+\w+)?
         |latest(?:\s+\w+)?|top\s+(?:news|stories)|trending(?:\s+\w+)?|most\s+(?:read|popular|viewed)
         |popular(?:\s+\w+)?|advertisement|sponsored(?:\s+\w+)?)\s*:?\s*
      | (?:share|tweet|email|print|comment|comments)(?:\s+(?:this|on|via|article|story|post|\w+))*\s*:?\s*
      | .*\bcomments?\s+(?:are|is)\s+closed\b.*
      | (?:leave\s+a\s+(?:comment|reply)|post\s+a\s+comment|join\s+the\s+conversation)\b.*
      | (?:tags?|topics?|filed\s+under|categories|category|keywords?)\s*:.*
      | (?:image|photo|picture|video)(?:\s+(?:credit|source|caption))?\s*:.*
      | (?:follow\s+us|click\s+here|all\s+rights\s+reserved|copyright\b|©).*
      | .*\b(?:cookie|cookies)\b.*\b(?:accept|consent|policy)\b.*
    )$""",
    re.IGNORECASE | re.VERBOSE,
)
_SHORT_WORDS = 12

# "By Ken Hanly  Jun 22, 2018 in Business": a byline, not a sentence.
_BYLINE = re.compile(r"^[Bb][Yy]\s+[A-Z][\w.'’-]*(?:\s+[A-Z][\w.'’-]*){0,3}\b", re.UNICODE)

# A line that ends like a sentence: terminal punctuation, possibly inside closing quotes or brackets.
# A comma counts because news copy often ends a quoted paragraph with ",”" before the attribution.
_SENTENCE_END = re.compile(r"[.!?…:;,][\"'”’»)\]]*$")
_PROSE_MIN_WORDS = 20


def _words(line: str) -> int:
    return len(line.split())


def is_chrome(line: str) -> bool:
    """True for a line that is site furniture on any news page."""
    if _words(line) <= _SHORT_WORDS and _CHROME_SHORT.match(line):
        return True
    if _BYLINE.match(line) and _words(line) <= _SHORT_WORDS and not _SENTENCE_END.search(line):
        return True
    return is_tag_line(line)


def is_tag_line(line: str) -> bool:
    """A comma-separated list of short keywords with no sentence in it ("petya, cyber attack, ransomware")."""
    if _SENTENCE_END.search(line):
        return False
    parts = [p.strip() for p in line.split(",")]
    return len(parts) >= 3 and all(0 < _words(p) <= 3 for p in parts)


def is_prose(line: str) -> bool:
    """A line that reads as running text: it ends like a sentence, or is long enough to be one."""
    return bool(_SENTENCE_END.search(line)) or _words(line) >= _PROSE_MIN_WORDS


def is_headline(line: str, title: str | None) -> bool:
    """The article's own title printed again, possibly with the site's name ("Title - Metro US")."""
    if not title or _SENTENCE_END.search(line):
        return False
    return _comparable(title) in _comparable(line)


def _comparable(text: str) -> str:
    return " ".join(text.translate(_STRAIGHT_QUOTES).lower().split())


_STRAIGHT_QUOTES = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"'})


def kept_lines(raw: str, title: str | None = None) -> list[tuple[int, str]]:
    """The article's running-text lines, each with its offset in `raw`: chrome, headings, titles and
    bylines dropped, kept lines unedited (only their surrounding white space trimmed)."""
    kept = []
    for match in re.finditer(r"[^\n]+", raw):
        line = match.group().strip()
        if line and not is_chrome(line) and not is_headline(line, title) and is_prose(line):
            kept.append((match.start() + match.group().index(line[0]), line))
    return kept


def clean_lines(raw: str, title: str | None = None) -> list[str]:
    """The kept lines alone."""
    return [line for _, line in kept_lines(raw, title)]


def clean(raw: str, title: str | None = None) -> str:
    """Cleaned article text: kept lines as paragraphs separated by a blank line."""
    return PARAGRAPH_BREAK.join(clean_lines(raw, title))


PARAGRAPH_BREAK = "\n\n"


def raw_offsets(raw: str, title: str | None = None) -> list[tuple[int, int]]:
    """For each kept line, (offset in the cleaned text, offset in `raw`): maps passages back to the file."""
    mapping, position = [], 0
    for raw_start, line in kept_lines(raw, title):
        mapping.append((position, raw_start))
        position += len(line) + len(PARAGRAPH_BREAK)
    return mapping
