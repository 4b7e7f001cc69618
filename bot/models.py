"""The small frozen data objects passed between stages."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Article:
    """One article of the corpus, its metadata, and its cleaned text.

    `raw` is the body as stored in the file (front matter removed); `text` is the body with site
    chrome removed. Every sentence of `text` occurs verbatim in `raw`.
    """

    id: str
    path: str
    title: str
    outlet: str | None
    author: str | None
    date: str | None
    url: str | None
    raw: str
    text: str
    content_hash: str
    # For display only (bot/label.py): the title, else the article's own heading or first words.
    label: str = ""


@dataclass(frozen=True)
class Sentence:
    """A sentence of an article's cleaned text, by character offsets into it."""

    start: int
    end: int


@dataclass(frozen=True)
class Passage:
    """A chunk of an article's cleaned text: the unit that is embedded, retrieved and cited.

    `start`/`end` are character offsets into `Article.text`; `sentences` are offsets into the same
    text, so a quote can be cut from the passage without searching for it.
    """

    id: str
    article_id: str
    start: int
    end: int
    text: str
    sentences: tuple[Sentence, ...] = field(default=())

    def sentence_texts(self) -> list[str]:
        """The passage's sentences, in order."""
        return [self.text[s.start - self.start : s.end - self.start] for s in self.sentences]


@dataclass(frozen=True)
class Hit:
    """A retrieved passage and the scores that ranked it."""

    passage: Passage
    row: int
    score: float
    dense: float
    sentence: float
    lexical: float
    coverage: float


@dataclass(frozen=True)
class Source:
    """Where a cited passage was printed."""

    id: str
    title: str
    outlet: str | None
    date: str | None
    url: str | None
    path: str
    # For display only, never metadata: the title, else the article's own heading or first words.
    label: str = ""


@dataclass(frozen=True)
class Citation:
    """One numbered citation: a passage, the sentence(s) quoted from it, and every source carrying it."""

    n: int
    passage_text: str  # the cited passage's text (JSON key "passage"); Hit.passage is the Passage
    quote: str
    score: float
    sources: tuple[Source, ...]
    passage_id: str = ""


@dataclass(frozen=True)
class AnswerSpan:
    """The words of citation `n`'s quote that answer the question ("More than 450"), verbatim."""

    n: int
    text: str


@dataclass(frozen=True)
class Answer:
    """What the engine says to a question: citations in rank order, or an honest abstention."""

    question: str
    abstained: bool
    # What to say first: the quotes joined with their citation numbers, or that the articles don't
    # cover it (JSON key "answer").
    summary: str
    citations: tuple[Citation, ...]
    notes: tuple[str, ...] = ()
    # The text actually searched: the question, or with a follow-up, the question it follows too.
    query: str = ""
    # The answering words of the first quote, where the question asks for a number, name or date.
    answer_span: AnswerSpan | None = None
    # When the reader declines a question the first gate let through: the closest the articles
    # come, shown apart and never as an answer (a declined question may still find what it wants).
    related: tuple[Citation, ...] = ()
