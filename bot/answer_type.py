"""What a question asks for, and where a sentence supplies it: numbers, dates, names, reasons.

A question that asks "how many" is answered by a sentence holding a number the question does not
already hold; "who" by a name, "when" by a date, "why" by a reason. These are shallow, rule-based
readings (no tagger ships offline here): they tell the reader whether a candidate sentence *could*
answer, and give the answer span to show in bold when it does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class Wanted(Enum):
    """The kind of answer a question asks for."""

    NUMBER = "number"
    DATE = "date"
    NAME = "name"  # a person, organisation or place: a capitalised name
    REASON = "reason"
    OTHER = "other"


# Checked in order: "how many years" asks for a number, "what year" for a date.
_WANTED_PATTERNS: list[tuple[Wanted, re.Pattern[str]]] = [
    (
        Wanted.NUMBER,
        re.compile(
            r"\bhow (many|much|long|old|far|big|large|often)\b|\bwhat (percentage|percent|number|amount|share"
            r"|proportion|fraction|sum|price|cost|size|age)\b|\bhow many\b|\b(number|count) of\b"
        ),
    ),
    (
        Wanted.DATE,
        re.compile(
            r"\bwhen(s|'s)?\b|\b(what|which) (year|date|day|month|decade|century|time|period|season)\b"
            r"|\bsince when\b|\bin what year\b"
        ),
    ),
    (
        Wanted.REASON,
        re.compile(r"\bwhy\b|\bwhat (was|is|were|are)? ?the (reason|cause|motive)\b|\bhow come\b"),
    ),
    (
        Wanted.NAME,
        re.compile(
            r"\bwho(m|se|'s)?\b|\bwhere\b|\b(what|which) (company|companies|firm|organi[sz]ation|group|agency"
            r"|city|country|state|town|place|person|people|team|university|school|newspaper|outlet|party"
            r"|department|band|network|church|king|president|ceo|name)\b|\bname of\b"
        ),
    ),
]


def wanted(question: str) -> Wanted:
    """The kind of answer the question asks for (OTHER when the wording does not say)."""
    lowered = question.lower().replace("’", "'")
    for kind, pattern in _WANTED_PATTERNS:
        if pattern.search(lowered):
            return kind
    return Wanted.OTHER


_NUMBER_WORDS = (
    r"one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen"
    r"|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|thousand"
    r"|million|billion|trillion|dozen|dozens|hundreds|thousands|millions|billions|half|several|a few"
)
_MODIFIER = (
    r"(?:(?:more than|over|about|around|nearly|almost|roughly|approximately|at least|at most|some|up to"
    r"|fewer than|less than|only|just|an estimated|close to|as many as|as much as)\s+)?"
)
_NUMBER = re.compile(
    # A currency sign opens the figure: "$41 million", not "41 million" ("\b" cannot start before "$").
    rf"(?:\b|(?<![\w$£€])(?=[$£€])){_MODIFIER}(?:(?:US|U\.S\.)?\$\s?|£|€)?"
    rf"(?:\d[\d,]*(?:\.\d+)?|(?:a |an )?(?:{_NUMBER_WORDS})(?:[\s-](?:{_NUMBER_WORDS}))*)"
    r"(?:\s?(?:%|percent|per cent)|\s(?:million|billion|thousand|hundred|trillion))?\b%?",
    re.IGNORECASE,
)
_MONTH = (
    r"(?:January|February|March|April|May|June|July|August|September|October|November|December"
    r"|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)\.?"
)
_DATE = re.compile(
    rf"\b(?:{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}|\d{{1,2}}\s+{_MONTH},?\s+\d{{4}}"
    rf"|{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?|{_MONTH},?\s+\d{{4}}|{_MONTH}"
    r"|(?:the )?(?:early |late |mid-)?(?:1[0-9]|20)\d0s|(?:1[0-9]|20)\d\d"
    r"|(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
    r"|(?:last|this|next) (?:week|month|year|spring|summer|fall|autumn|winter)"
    r"|(?:yesterday|today|\d{1,2}(?:st|nd|rd|th)? century))\b"
)
# A run of capitalised words, allowing short joiners inside ("Bank of America", "Jeff Bezos").
_NAME = re.compile(
    r"\b(?:[A-Z][\w'’.&-]*|[A-Z]{2,})(?:\s+(?:(?:of|de|the|and|for|von|van|du|la|le)\s+)?(?:[A-Z][\w'’.&-]*))*"
)
_REASON = re.compile(
    r"\b(because|since|due to|owing to|as a result|so that|in order to|so as to|citing|cited|cites|over"
    r"|amid|reason|reasons|concern|concerns|fear|fears|worried|worry|protest|protesting|against|led to"
    r"|caused|cause|therefore|thus|to stop|to avoid|to prevent|in response|for fear)\b",
    re.IGNORECASE,
)
# Capitalised only because they start a sentence or a quotation: not names.
_NOT_NAMES = frozenset(
    [
        "a",
        "an",
        "the",
        "this",
        "that",
        "these",
        "those",
        "it",
        "its",
        "in",
        "on",
        "at",
        "by",
        "for",
        "from",
        "to",
        "of",
        "and",
        "or",
        "but",
        "if",
        "as",
        "we",
        "they",
        "he",
        "she",
        "i",
        "you",
        "our",
        "their",
        "his",
        "her",
        "there",
        "here",
        "what",
        "who",
        "when",
        "where",
        "why",
        "how",
        "which",
        "while",
        "after",
        "before",
        "during",
        "with",
        "without",
        "not",
        "no",
        "yes",
        "so",
        "also",
        "however",
        "many",
        "some",
        "all",
        "most",
        "more",
        "one",
    ]
)


@dataclass(frozen=True)
class Span:
    """A candidate answer inside a sentence, by character offsets into it."""

    start: int
    end: int
    text: str


def candidates(sentence: str, kind: Wanted, question: str) -> list[Span]:
    """Spans of the sentence that could answer a question of this kind and that the question does
    not already hold ("how many Amazon employees…" is not answered by "Amazon")."""
    if kind is Wanted.NUMBER:
        found = _NUMBER.finditer(sentence)
    elif kind is Wanted.DATE:
        found = _DATE.finditer(sentence)
    elif kind is Wanted.NAME:
        found = _NAME.finditer(sentence)
    else:
        return []
    asked = set(_words(question))
    spans = []
    for match in found:
        span = _tidy(sentence, match.start(), match.end(), kind)
        if span is None:
            continue
        if kind is Wanted.NAME:
            span = _without_asked_edges(span, asked)
        words = _words(span.text)
        if words and not set(words) <= asked:
            spans.append(span)
    return spans


def gives_reason(sentence: str) -> bool:
    """The sentence states a cause or purpose ("because", "citing", "to stop", "over concerns")."""
    return _REASON.search(sentence) is not None


def _without_asked_edges(span: Span, asked: set[str]) -> Span:
    """Drop the question's own words from the ends of a name: "CEO Jeff Bezos" → "Jeff Bezos"."""
    tokens = list(re.finditer(r"\S+", span.text))
    while len(tokens) > 1 and set(_words(tokens[0].group())) <= asked:
        tokens.pop(0)
    while len(tokens) > 1 and set(_words(tokens[-1].group())) <= asked:
        tokens.pop()
    start, end = tokens[0].start(), tokens[-1].end()
    return Span(span.start + start, span.start + end, span.text[start:end])


def _tidy(sentence: str, start: int, end: int, kind: Wanted) -> Span | None:
    """Trim a raw match: leading capitalised function words of a name, trailing punctuation."""
    text = sentence[start:end]
    if kind is Wanted.NAME:
        words = text.split()
        while words and words[0].lower().strip("'’") in _NOT_NAMES:
            start += len(words[0]) + (len(text) - len(text.lstrip()))
            text = sentence[start:end].lstrip()
            start = end - len(text)
            words = text.split()
        if not words:
            return None
    while text and text[-1] in ".,;:'’-":
        text = text[:-1]
        end -= 1
    if not text.strip():
        return None
    return Span(start, end, text)


_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())
