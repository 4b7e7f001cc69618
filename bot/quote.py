"""Choosing the sentence of a passage that answers the question: what gets quoted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bot.models import Passage, Sentence

# Sentences shorter than this many words say too little alone ("They added:"); quote the next too.
_SHORT_QUOTE_WORDS = 8


@dataclass(frozen=True)
class Quote:
    """The quoted span of a passage, its offsets in the article's cleaned text, and how well it matched."""

    text: str
    start: int
    end: int
    score: float


def choose_quote(passage: Passage, scores: Sequence[float]) -> Quote:
    """The passage's best sentence by the reader's `scores` (one per sentence, in order).

    A very short best sentence is joined with the one after it so the quote stands on its own.
    """
    texts = passage.sentence_texts()
    if not texts:
        return Quote(passage.text, passage.start, passage.end, 0.0)
    best = int(np.argmax(scores))
    span: list[Sentence] = [passage.sentences[best]]
    if len(texts[best].split()) < _SHORT_QUOTE_WORDS and best + 1 < len(texts):
        span.append(passage.sentences[best + 1])
    start, end = _trim_quote_marks(passage.text, span[0].start - passage.start, span[-1].end - passage.start)
    return Quote(passage.text[start:end], start + passage.start, end + passage.start, float(scores[best]))


_OPENING = "\"“‘'«"
_CLOSING = "\"”’'»"


def _trim_quote_marks(text: str, start: int, end: int) -> tuple[int, int]:
    """Drop quotation marks left unpaired by the sentence split (“We refuse… is quoted, its close is
    two sentences on). The quote is shown in quotation marks of its own, and must stay verbatim."""
    piece = text[start:end]
    opened = sum(piece.count(c) for c in "“«")
    closed = sum(piece.count(c) for c in "”»")
    straight = piece.count('"')
    if piece[:1] in _OPENING and (opened > closed or straight % 2 == 1):
        start += 1
    piece = text[start:end]
    opened = sum(piece.count(c) for c in "“«")
    closed = sum(piece.count(c) for c in "”»")
    if piece[-1:] in _CLOSING and piece[-1:] != "'" and (closed > opened or piece.count('"') % 2 == 1):
        end -= 1
    return start, end
