"""Follow-up questions in a conversation: "how many signed it?" after a question about the letter,
"what about Microsoft?" after a question about Google."""

from __future__ import annotations

import re
from collections.abc import Callable

from bot.lexical import stop_words, terms

# Words that point back at something said before. A question using one, with little content of
# its own, is read together with the question before it; any other question starts a new topic.
_REFERS_BACK = frozenset(
    {"it", "its", "they", "them", "their", "theirs", "that", "this", "those", "these"}
    | {"he", "him", "his", "she", "her", "there"}
)
_CONTINUES = ("and ", "also ", "what about", "how about", "what else", "who else")
# "what about Microsoft?", "and microsoft", "how about for Google": a new subject for the same question.
_SWAP = re.compile(
    r"^\s*(?:and\s+)?(?:what|how)\s+about\s+(?:for\s+|with\s+|at\s+)?(?P<subject>.+?)[\s?.!]*$|"
    r"^\s*and\s+(?P<bare>[^?]+?)[\s?.!]*$",
    re.IGNORECASE,
)
_MAX_OWN_TERMS = 3
_MAX_SUBJECT_WORDS = 4
# How close in meaning the new subject must be to a word of the question before to take its place
# (all-MiniLM-L6-v2 on single words: Microsoft~Google 0.38, Microsoft~pizza 0.2). Single-word
# similarities are flat, so a capitalised word of the question before (a name) is preferred.
_SAME_KIND = 0.3
_WORD = re.compile(r"[a-z']+")
_TOKEN = re.compile(r"[\w-]+")

Similarity = Callable[[str, list[str]], list[float]]


def is_followup(question: str) -> bool:
    """The question leans on the one before it: a pointing word or an opening like "what about"."""
    lowered = question.lower().strip()
    words = set(_WORD.findall(lowered))
    points_back = bool(words & _REFERS_BACK) or lowered.startswith(_CONTINUES)
    return points_back and len(set(terms(question))) <= _MAX_OWN_TERMS


def resolve_followup(question: str, previous_query: str | None, similarity: Similarity | None = None) -> str:
    """The text to search for: the question alone, the question before with its subject swapped
    ("what about Microsoft?"), or the question before and the follow-up together."""
    if not previous_query or not is_followup(question):
        return question
    swapped = _swap_subject(question, previous_query, similarity) if similarity else None
    return swapped or f"{previous_query} {question}"


def _swap_subject(question: str, previous: str, similarity: Similarity) -> str | None:
    """The previous question with its word closest in meaning to the new subject replaced by it;
    None when the follow-up names no new subject or nothing in the question before is like it."""
    match = _SWAP.match(question)
    if not match:
        return None
    subject = (match.group("subject") or match.group("bare") or "").strip()
    if not subject or len(subject.split()) > _MAX_SUBJECT_WORDS or not terms(subject):
        return None
    stop = stop_words()
    tokens = [m for m in _TOKEN.finditer(previous) if m.group().lower().strip("'’") not in stop]
    names = [m for m in tokens if m.start() > 0 and m.group()[:1].isupper()]
    tokens = names or tokens
    if not tokens:
        return None
    scores = similarity(subject, [m.group() for m in tokens])
    best = max(range(len(tokens)), key=scores.__getitem__)
    if scores[best] < _SAME_KIND:
        return None
    target = tokens[best]
    return previous[: target.start()] + subject + previous[target.end() :]
