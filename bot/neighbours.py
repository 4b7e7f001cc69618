"""Words of like meaning: a question word missing from a sentence may still be there in other words
("staffers" for "employees", "cops" for "police"). Single words are embedded with the embedding
model and cached, since the corpus's words recur from question to question."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

from bot.lexical import stop_words, term_set
from bot.reader import FEATURES, WORD, Question, Reading

# The decision features that `neighbour_coverage` returns, in its order.
NEAR_FEATURES = ("near_focus", "near_missing", "absent_unmatched")

# A question word counts as found in a sentence through a word of like meaning at least this close
# (all-MiniLM-L6-v2 on single words: cops~police 0.93, staffers~employees 0.76, quit~resigned 0.57,
# Microsoft~Google 0.38, headquartered~firm 0.42).
_NEIGHBOUR = 0.55
# How many candidate sentences (closest by cosine and word coverage) are read word by word.
_NEIGHBOUR_SENTENCES = 3


class WordVectors:
    """Embeddings of single words, cached: the corpus's words recur from question to question."""

    def __init__(self, encode: Callable[[list[str]], np.ndarray], size: int = 50_000) -> None:
        self._encode = encode
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def __call__(self, words: Sequence[str]) -> dict[str, np.ndarray]:
        with self._lock:
            missing = [w for w in dict.fromkeys(words) if w not in self._cache]
        found = dict(zip(missing, self._encode(missing), strict=True)) if missing else {}
        with self._lock:
            self._cache.update(found)
            result = {w: self._cache[w] for w in words if w in self._cache} | found
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return result


def neighbour_coverage(
    question: Question, readings: Sequence[Reading], passages: Sequence[str], words: WordVectors
) -> tuple[float, float, float]:
    """Read the closest sentences word by word: a question word missing from a sentence is found
    there when the sentence has a word of like meaning ("staffers" ~ "employees").

    Returns, for the best of the closest sentences: the weighted share of the focus found, the
    weight of the most specific focus term still unmatched, and the share of the focus weight that
    the corpus lacks and no word of the best passages (`passages`) stands in for ("Uber",
    "headquartered"; but "ppl" has "people").
    """
    if not question.focus or not readings:
        return 0.0, 1.0, question.absent
    column = {name: i for i, name in enumerate(FEATURES)}
    closest = sorted(
        readings,
        key=lambda r: -(r.features[column["sentence_cosine"]] + r.features[column["sentence_focus"]]),
    )[:_NEIGHBOUR_SENTENCES]
    sentence_words = [_content_words(r.text) for r in closest]
    passage_words = sorted({w for text in passages for w in _content_words(text)})
    query_words = [t.word for t in question.focus if t.word]
    vectors = words(query_words + [w for ws in sentence_words for w in ws] + passage_words)
    total = sum(t.weight for t in question.focus) or 1.0
    best_found, best_missing = 0.0, 1.0
    for text, ws in zip((r.text for r in closest), sentence_words, strict=True):
        have = term_set(text)
        matrix = np.asarray([vectors[w] for w in ws]) if ws else np.zeros((0, 1))
        found = missing = 0.0
        for term in question.focus:
            if term.stem in have:
                found += term.weight
                continue
            similarity = float((matrix @ vectors[term.word]).max()) if len(matrix) and term.word else 0.0
            if similarity >= _NEIGHBOUR:
                found += term.weight
            else:
                missing = max(missing, term.weight)
        if found > best_found or (found == best_found and missing < best_missing):
            best_found, best_missing = found, missing
    around = np.asarray([vectors[w] for w in passage_words]) if passage_words else np.zeros((0, 1))
    absent = sum(
        t.weight
        for t in question.focus
        if not t.in_corpus
        and not (len(around) and t.word and float((around @ vectors[t.word]).max()) >= _NEIGHBOUR)
    )
    return best_found / total, best_missing, absent / total


def _content_words(text: str) -> list[str]:
    """The text's words, lower-cased, without stop and question words, as they are spelled."""
    stop = stop_words()
    words = (m.group().lower().strip("'") for m in WORD.finditer(text))
    return [w for w in words if w and w not in stop]
