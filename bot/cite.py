"""Turning ranked passages into citations: one per statement, every outlet that printed it, and
figures that disagree shown side by side rather than one picked silently."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from difflib import SequenceMatcher

from bot.lexical import term_set
from bot.models import Hit
from bot.quote import Quote

# A statement reported again is usually re-punctuated or trimmed ("“We also know…,” the letter
# reads" against "…: "We also know…"), so the shared wording must be most of a sentence, and long
# enough that it is not a stock phrase.
_SHARED_MIN_WORDS = 6
_SHARED_MIN_SHARE = 0.6
_EDGE = "\"'“”‘’«»()[],;:—–- \u00a0"


@dataclass
class Group:
    """A citation being assembled: the quote, and the hits (one per article) that print it."""

    quote: Quote
    hits: list[Hit] = field(default_factory=list)

    @property
    def articles(self) -> set[str]:
        return {h.passage.article_id for h in self.hits}


def shared_wording(quote: Quote, hit: Hit) -> Quote | None:
    """The part of `quote` that another passage prints word for word, when it is most of a sentence.

    The result is a substring of both, so it stays verbatim in every source it is cited for.
    """
    runs = _word_runs(quote.text)
    for sentence in hit.passage.sentence_texts():
        if runs.isdisjoint(_word_runs(sentence)):
            continue  # no shared wording of _SHARED_MIN_WORDS words is possible (see _word_runs)
        start, end = _word_bounds(quote.text, *_longest_common(quote.text, sentence))
        common = quote.text[start:end]
        long_enough = len(common.split()) >= _SHARED_MIN_WORDS
        if long_enough and len(common) >= _SHARED_MIN_SHARE * min(len(quote.text), len(sentence)):
            return Quote(common, quote.start + start, quote.start + end, quote.score)
    return None


def _longest_common(a: str, b: str) -> tuple[int, int]:
    """Where in `a` the longest substring it shares with `b` lies (the earliest, as difflib says)."""
    if a in b:  # common when passages overlap or an outlet prints the quote inside a longer sentence
        return 0, len(a)
    if b in a:
        at = a.find(b)
        return at, at + len(b)
    match = SequenceMatcher(None, a, b, autojunk=False).find_longest_match(0, len(a), 0, len(b))
    return match.a, match.a + match.size


@functools.lru_cache(maxsize=65536)
def _word_runs(text: str) -> frozenset[tuple[str, ...]]:
    """Every run of _SHARED_MIN_WORDS - 2 consecutive white-space separated words of the text.

    A cheap test before the character-level match, which is most of an answer's time otherwise:
    a shared span of _SHARED_MIN_WORDS words has at least that many minus two inner words, each
    with white space on both sides in both texts, so both texts hold that run of whole words.
    """
    words = text.split()
    size = _SHARED_MIN_WORDS - 2
    return frozenset(tuple(words[i : i + size]) for i in range(len(words) - size + 1))


def _word_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    """Shrink a span to whole words, without punctuation or quotation marks at its edges."""
    if start > 0 and text[start - 1].isalnum():
        while start < end and text[start].isalnum():
            start += 1
    if end < len(text) and text[end].isalnum():
        while end > start and text[end - 1].isalnum():
            end -= 1
    while start < end and text[start] in _EDGE:
        start += 1
    while end > start and text[end - 1] in _EDGE:
        end -= 1
    return start, end


_FIGURE = re.compile(r"\d[\d,.]*\d|\d")
_CAPITALIZED = re.compile(r"\b[A-Z][a-zA-Z]+\b")


def stated_figures(text: str) -> list[str]:
    """The numbers as the sentence prints them, for showing."""
    return _FIGURE.findall(text)


def figures(text: str) -> set[str]:
    """The numbers a sentence states ("3,100" and "3100" are one figure)."""
    return {f.replace(",", "") for f in _FIGURE.findall(text)}


def disagree(a: str, b: str) -> bool:
    """Two sentences state different figures for the same fact.

    Same fact: most content words of the shorter one occur in the other (figures aside), and they
    share at least two names
    (capitalized words inside the sentence: "Google", "Sundar Pichai"). Different figures: each
    has numbers and none of them in common.
    """
    fa, fb = figures(a), figures(b)
    if not fa or not fb or not fa.isdisjoint(fb):
        return False
    ta = {t for t in term_set(a) if not t[0].isdigit()}
    tb = {t for t in term_set(b) if not t[0].isdigit()}
    if not ta or not tb or len(ta & tb) / min(len(ta), len(tb)) < 0.5:
        return False
    return len(_names(a) & _names(b)) >= 2


def _names(sentence: str) -> set[str]:
    # Capitalized words, but not the sentence's first word, which is capitalized anyway.
    return {m.group() for m in _CAPITALIZED.finditer(sentence) if m.start() > 0}


def conflicting_sentence(group: Group, hits: list[Hit]) -> tuple[Hit, Quote] | None:
    """A sentence of another article among the hits that gives different figures for the group's fact."""
    if not figures(group.quote.text):
        return None
    for hit in hits:
        if hit.passage.article_id in group.articles:
            continue
        for sentence, text in zip(hit.passage.sentences, hit.passage.sentence_texts(), strict=True):
            if disagree(group.quote.text, text):
                return hit, Quote(text, sentence.start, sentence.end, hit.score)
    return None
