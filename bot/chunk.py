"""Sentence-aware chunking: whole sentences packed into passages that fit the embedding model."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bot.models import Article, Passage, Sentence
from bot.sentences import paragraph_starts, split_sentences

TokenCounter = Callable[[Sequence[str]], list[int]]


def chunk(
    article: Article,
    max_tokens: int,
    overlap: int,
    count_tokens: TokenCounter,
) -> list[Passage]:
    """Passages of the article's cleaned text, each at most `max_tokens` word pieces.

    Sentences are packed greedily. A passage closes early at a paragraph break once it is half
    full, so passages follow the article's own structure; otherwise the last `overlap` sentences
    open the next passage, so an answer spanning the break is whole in one of them. A sentence
    longer than `max_tokens` is split at word boundaries into pieces that fit: nothing is ever
    truncated by the model.
    """
    text = article.text
    sentences = _fit_sentences(text, split_sentences(text), max_tokens, count_tokens)
    if not sentences:
        return []
    sizes = count_tokens([text[s.start : s.end] for s in sentences])
    breaks = paragraph_starts(text)

    groups: list[list[int]] = []
    current: list[int] = []
    used = 0
    for i, size in enumerate(sizes):
        at_break = sentences[i].start in breaks
        if current and (used + size > max_tokens or (at_break and used >= max_tokens // 2)):
            groups.append(current)
            carried = [] if at_break else current[-overlap:] if overlap else []
            # Overlap never pushes a passage over the limit.
            while carried and sum(sizes[j] for j in carried) + size > max_tokens:
                carried = carried[1:]
            current, used = list(carried), sum(sizes[j] for j in carried)
        current.append(i)
        used += size
    groups.append(current)
    return [_passage(article, [sentences[j] for j in group]) for group in groups]


def _passage(article: Article, sentences: list[Sentence]) -> Passage:
    start, end = sentences[0].start, sentences[-1].end
    return Passage(
        id=f"{article.id}@{start}-{end}",
        article_id=article.id,
        start=start,
        end=end,
        text=article.text[start:end],
        sentences=tuple(sentences),
    )


def _fit_sentences(
    text: str, sentences: list[Sentence], max_tokens: int, count_tokens: TokenCounter
) -> list[Sentence]:
    """The sentences, with any longer than `max_tokens` split into word-boundary pieces that fit."""
    sizes = count_tokens([text[s.start : s.end] for s in sentences])
    fitted: list[Sentence] = []
    for sentence, size in zip(sentences, sizes, strict=True):
        if size <= max_tokens:
            fitted.append(sentence)
        else:
            fitted.extend(_split_long(text, sentence, max_tokens, count_tokens))
    return fitted


def _split_long(text: str, sentence: Sentence, max_tokens: int, count_tokens: TokenCounter) -> list[Sentence]:
    # Word spans of the sentence; pieces grow word by word until the next word would not fit.
    spans: list[tuple[int, int]] = []
    pos = sentence.start
    for word in text[sentence.start : sentence.end].split():
        begin = text.index(word, pos)
        spans.append((begin, begin + len(word)))
        pos = begin + len(word)
    word_sizes = count_tokens([text[a:b] for a, b in spans])
    pieces: list[Sentence] = []
    first, used = 0, 0
    for i, size in enumerate(word_sizes):
        if i > first and used + size > max_tokens:
            pieces.append(Sentence(spans[first][0], spans[i - 1][1]))
            first, used = i, 0
        used += size
    pieces.append(Sentence(spans[first][0], spans[-1][1]))
    # A single "word" longer than the limit (a pasted hash, a URL) is cut by characters.
    return [p for piece in pieces for p in _cut_chars(text, piece, max_tokens, count_tokens)]


def _cut_chars(text: str, piece: Sentence, max_tokens: int, count_tokens: TokenCounter) -> list[Sentence]:
    if count_tokens([text[piece.start : piece.end]])[0] <= max_tokens:
        return [piece]
    middle = (piece.start + piece.end) // 2
    return _cut_chars(text, Sentence(piece.start, middle), max_tokens, count_tokens) + _cut_chars(
        text, Sentence(middle, piece.end), max_tokens, count_tokens
    )
