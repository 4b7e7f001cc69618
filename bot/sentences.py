"""Sentence boundaries, as character offsets, so quotes are cut from the text and never rewritten."""

from __future__ import annotations

import re

import blingfire

from bot.models import Sentence

_PARAGRAPH = re.compile(r"[^\n]+")


def split_sentences(text: str) -> list[Sentence]:
    """Sentences of `text` in order, each within one paragraph (line), white space trimmed.

    blingfire's model handles abbreviations ("U.S.", "Mr.") and quotes; splitting per line first
    keeps a heading or a list item from running into the next sentence.
    """
    sentences: list[Sentence] = []
    for paragraph in _PARAGRAPH.finditer(text):
        base = paragraph.start()
        body = paragraph.group()
        _, offsets = blingfire.text_to_sentences_and_offsets(body)
        for start, end in offsets:
            piece = body[start:end]
            lead = len(piece) - len(piece.lstrip())
            trail = len(piece) - len(piece.rstrip())
            if end - trail > start + lead:
                sentences.append(Sentence(base + start + lead, base + end - trail))
    return sentences


def paragraph_starts(text: str) -> set[int]:
    """Offsets where a paragraph begins: chunking prefers to break there."""
    return {m.start() for m in _PARAGRAPH.finditer(text)}
