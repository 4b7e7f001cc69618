"""Follow-up questions in a conversation: "how many signed it?" after a question about the letter."""

from __future__ import annotations

import re

from bot.lexical import terms

# Words that point back at something said before. A question using one, with little content of
# its own, is read together with the question before it; any other question starts a new topic.
_REFERS_BACK = frozenset(
    {"it", "its", "they", "them", "their", "theirs", "that", "this", "those", "these"}
    | {"he", "him", "his", "she", "her", "there"}
)
_CONTINUES = ("and ", "also ", "what about", "how about", "what else", "who else")
_MAX_OWN_TERMS = 3
_WORD = re.compile(r"[a-z']+")


def is_followup(question: str) -> bool:
    """The question leans on the one before it: a pointing word or an opening like "what about"."""
    lowered = question.lower().strip()
    words = set(_WORD.findall(lowered))
    points_back = bool(words & _REFERS_BACK) or lowered.startswith(_CONTINUES)
    return points_back and len(set(terms(question))) <= _MAX_OWN_TERMS


def resolve_followup(question: str, previous_query: str | None) -> str:
    """The text to search for: the question alone, or the previous query and the follow-up together."""
    if previous_query and is_followup(question):
        return f"{previous_query} {question}"
    return question
