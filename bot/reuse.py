"""What an index update keeps: the vectors of every passage and sentence whose text the live index
already holds (found by a hash of the text), and the texts that must be embedded anew."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bot import store
from bot.models import Passage
from bot.tables import KEY_BYTES, text_key, text_keys


@dataclass
class Reuse:
    """Which vectors of the live index a new version keeps, and which texts must be embedded.

    A text the live index holds, as a passage or as a sentence, is never embedded again: its
    vector is read back from the FAISS index or the sentence table.
    """

    previous: store.Index
    live_passages: KeyRows
    live_sentences: KeyRows
    todo: list[str]  # texts to embed, each once
    new_sentences: dict[str, int]  # sentence texts the live sentence table lacks → their order
    refs: list[list[tuple[bool, int]]]  # per new passage: (is a live row, live row or new order)
    keep_sentences: np.ndarray  # live sentence rows the new version keeps, increasing

    def vectors(self, texts: list[str], embedded: dict[str, np.ndarray], dimension: int) -> np.ndarray:
        """The vector of each text: just embedded, or the live index's own."""
        out = np.zeros((len(texts), dimension), dtype=np.float32)
        from_passages: dict[int, int] = {}
        for n, text in enumerate(texts):
            if text in embedded:
                out[n] = embedded[text]
            elif (row := self.live_passages.get(text)) is not None:
                from_passages[n] = row
            elif (row := self.live_sentences.get(text)) is not None:
                # Stored as float16; renormalized so reused vectors are unit length like fresh ones.
                vector = np.asarray(self.previous.sentence_vectors[row], dtype=np.float32)
                out[n] = vector / max(float(np.linalg.norm(vector)), 1e-12)
        if from_passages:
            rows = np.array(list(from_passages.values()), dtype=np.int64)
            out[list(from_passages)] = self.previous.vectors_of(rows)
        return out

    def update_plan(
        self, keep: np.ndarray, passages: list[Passage], embedded: dict[str, np.ndarray], dimension: int
    ) -> store.UpdatePlan:
        """What the new version keeps of the live one and adds, with every vector in hand."""
        new_sentences = list(self.new_sentences)
        return store.UpdatePlan(
            keep=keep,
            passages=passages,
            sentence_rows=self.numbered_rows(),
            passage_vectors=self.vectors([p.text for p in passages], embedded, dimension),
            keep_sentences=self.keep_sentences,
            sentence_vectors=self.vectors(new_sentences, embedded, dimension).astype(np.float16),
            sentence_keys=text_keys(new_sentences),
        )

    def numbered_rows(self) -> list[tuple[int, ...]]:
        """Sentence rows of the new passages, numbered in the new version (kept rows first)."""
        position = {int(r): i for i, r in enumerate(self.keep_sentences)}
        base = len(self.keep_sentences)
        return [tuple(position[r] if live else base + r for live, r in refs) for refs in self.refs]


def plan_reuse(previous: store.Index, keep: np.ndarray, passages: list[Passage]) -> Reuse:
    # Sentences of kept passages stay; so do those a new passage shares with the live index.
    rows = previous.sentence_rows
    kept_mask = np.zeros(len(rows), dtype=bool)
    kept_mask[keep] = True
    used = set(np.unique(rows.flat[np.repeat(kept_mask, np.diff(rows.offsets))]).tolist())
    live_passages = KeyRows(previous.passage_keys() if passages else None)
    live_sentences = KeyRows(previous.sentence_keys() if passages else None)

    def known(text: str) -> bool:
        return live_passages.get(text) is not None or live_sentences.get(text) is not None

    todo: dict[str, None] = {}
    new_sentences: dict[str, int] = {}
    refs: list[list[tuple[bool, int]]] = []
    for passage in passages:
        if not known(passage.text):
            todo[passage.text] = None
        passage_refs = []
        for text in passage.sentence_texts():
            row = live_sentences.get(text)
            if row is not None:
                used.add(row)
                passage_refs.append((True, row))
                continue
            passage_refs.append((False, new_sentences.setdefault(text, len(new_sentences))))
            if not known(text):
                todo[text] = None
        refs.append(passage_refs)
    keep_sentences = np.array(sorted(used), dtype=np.int64)
    return Reuse(previous, live_passages, live_sentences, sorted(todo), new_sentences, refs, keep_sentences)


class KeyRows:
    """Text → row in a stored key table: finds the vectors of texts the live index already holds."""

    def __init__(self, keys: np.ndarray | None) -> None:
        self._rows: dict[bytes, int] = {}
        if keys is not None:
            data = np.ascontiguousarray(keys).tobytes()
            width = KEY_BYTES
            self._rows = {data[i * width : (i + 1) * width]: i for i in range(len(keys))}

    def get(self, text: str) -> int | None:
        return self._rows.get(text_key(text)) if self._rows else None
