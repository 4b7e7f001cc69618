"""Synthetic corpora of any size, recombined from real sentences (the seed articles and the SQuAD kit).

Every synthetic sentence is the first half of one real sentence joined to the second half of
another, so sentences are unique (as in a real corpus of that size: the sentence table and its
vectors grow with the corpus) while the vocabulary and the sentence lengths stay those of real
prose. Article `i` depends only on `i` and the seed, so a corpus of N articles is a prefix of a
corpus of 10·N articles and the embedding cache built for the small one serves the large one.

Each generated sentence remembers its two sources (`Recipe`), which is what lets `vectors.py`
derive a vector for it from the real embeddings of those sources at sizes where embedding every
text with the model would take hours.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import blingfire

from bot.corpus import parse_article
from bot.sentences import split_sentences

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_CORPUS = ROOT / "corpus"
SQUAD_ARTICLES = ROOT.parent / "shared" / "external" / "squad" / "articles"

# Sentences per paragraph and paragraphs per article: about ten passages of 200 word pieces an
# article, so 1k / 10k / 100k passages are about 100 / 1,000 / 10,000 articles.
PARAGRAPH_SENTENCES = (3, 6)
ARTICLE_PARAGRAPHS = (9, 12)
POOL_WORDS = (6, 60)


class Recipe(NamedTuple):
    """A synthetic sentence: the first half of pool sentence `a` joined to the second half of `b`."""

    a: int
    b: int


@dataclass
class Pool:
    """The real sentences synthetic text is made of."""

    sentences: list[str]
    titles: list[str]


def sentence_pool() -> Pool:
    """Sentences of the shipped articles (cleaned) and of the 48 SQuAD articles, in a fixed order."""
    sentences: list[str] = []
    titles: list[str] = []
    sources = [p for p in sorted(SHIPPED_CORPUS.glob("*.md")) if p.name != "README.md"]
    texts = [parse_article(p, p.read_bytes()).text for p in sources]
    for path in sorted(SQUAD_ARTICLES.glob("*.txt")):
        raw = path.read_text(encoding="utf-8")
        titles.append(raw.splitlines()[0].lstrip("# ").strip() if raw.startswith("#") else path.stem)
        texts.append("\n".join(line for line in raw.splitlines() if not line.startswith("#")))
    for text in texts:
        for s in split_sentences(text):
            piece = text[s.start : s.end]
            if POOL_WORDS[0] <= len(piece.split()) <= POOL_WORDS[1] and piece[-1] in ".!?":
                sentences.append(piece)
    return Pool(sentences=list(dict.fromkeys(sentences)), titles=titles)


class Generator:
    """Deterministic synthetic articles: article `i` is the same in every corpus and every run."""

    def __init__(self, pool: Pool, seed: int = 2018) -> None:
        self.pool = pool
        self.seed = seed
        self.words = [s.split(" ") for s in pool.sentences]
        self.recipes: dict[str, Recipe] = {}

    def sentence(self, rng: random.Random) -> str:
        while True:
            a, b = rng.randrange(len(self.words)), rng.randrange(len(self.words))
            wa, wb = self.words[a], self.words[b]
            cut_a = max(2, len(wa) // 2 + rng.randint(-2, 2))
            cut_b = max(1, min(len(wb) - 2, len(wb) // 2 + rng.randint(-2, 2)))
            head = wa[:cut_a]
            if head[-1][-1:] in ".!?":  # would read as two sentences
                continue
            text = " ".join(head + wb[cut_b:])
            self.recipes[text] = Recipe(a, b)
            return text

    def article(self, i: int) -> str:
        """The markdown file of synthetic article `i` (front matter and paragraphs)."""
        rng = random.Random(self.seed * 1_000_003 + i)
        paragraphs = []
        for _ in range(rng.randint(*ARTICLE_PARAGRAPHS)):
            while True:
                sentences = [self.sentence(rng) for _ in range(rng.randint(*PARAGRAPH_SENTENCES))]
                paragraph = " ".join(sentences)
                # The paragraph must split back into exactly these sentences (blingfire, as the indexer
                # splits), so that every sentence the indexer sees has a recipe.
                if blingfire.text_to_sentences(paragraph) == "\n".join(sentences):
                    break
            paragraphs.append(paragraph)
        title = f"{rng.choice(self.pool.titles)}: synthetic report {i}"
        month, day = rng.randint(1, 12), rng.randint(1, 28)
        return (
            f'---\ntitle: "{title}"\noutlet: "Synthetic Wire"\nauthor:\ndate: 2019-{month:02d}-{day:02d}\n'
            f"url:\n---\n" + "\n\n".join(paragraphs) + "\n"
        )

    def articles(self, count: int, start: int = 0) -> Iterator[tuple[str, str]]:
        """(file name, content) of articles start … start+count-1."""
        for i in range(start, start + count):
            yield f"syn_{i:07d}.md", self.article(i)


def write_corpus(folder: Path, generator: Generator, articles: int, with_shipped: bool = True) -> Path:
    """A corpus folder: the shipped articles (so protest questions have their answers) + synthetic ones."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    if with_shipped:
        for path in SHIPPED_CORPUS.glob("*.md"):
            if path.name != "README.md":
                shutil.copy(path, folder / path.name)
    for name, content in generator.articles(articles):
        (folder / name).write_text(content, encoding="utf-8")
    return folder
