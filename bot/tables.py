"""The index's tables on disk, read row by row when a question needs them: passages (a JSON line
each), vectors (a 2-D .npy file) and each passage's sentence rows; and the text keys that vectors
are stored and reused under."""

from __future__ import annotations

import hashlib
import json
import operator
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np

from bot.errors import IndexCorruptError
from bot.manifest import PASSAGE_OFFSETS, PASSAGES, SENTENCE_ROW_OFFSETS, SENTENCE_ROWS
from bot.models import Passage, Sentence

KEY_BYTES = 16


def text_key(text: str) -> bytes:
    """The key a text's vector is stored and reused under."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=KEY_BYTES).digest()


def text_keys(texts: Sequence[str]) -> np.ndarray:
    """Keys of many texts, as an (n, 16) uint8 array."""
    keys = np.zeros((len(texts), KEY_BYTES), dtype=np.uint8)
    for i, text in enumerate(texts):
        keys[i] = np.frombuffer(text_key(text), dtype=np.uint8)
    return keys


def passage_row(row: int, count: int) -> int:
    """A passage row as given, counted from the end when negative; IndexError when out of range."""
    row = operator.index(row)
    if row < 0:
        row += count
    if not 0 <= row < count:
        raise IndexError(f"passage row {row} out of range")
    return row


class PassageTable(Sequence[Passage]):
    """The passages of an index, parsed from their line of passages.jsonl when asked for.

    A line is read with pread when asked for: a 100k-passage index costs no Python object per
    passage, and the file's pages stay in the page cache rather than in the process (a memory map
    showed up in the serving process's RSS, most of the file after a few questions).
    """

    def __init__(self, path: Path, offsets: np.ndarray) -> None:
        self.path = path
        self.offsets = offsets
        self._file = path.open("rb")  # pread: no shared position, so threads can read at once

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @overload
    def __getitem__(self, row: int) -> Passage: ...
    @overload
    def __getitem__(self, row: slice) -> list[Passage]: ...
    def __getitem__(self, row: int | slice) -> Passage | list[Passage]:
        if isinstance(row, slice):
            return [self[i] for i in range(*row.indices(len(self)))]
        row = passage_row(row, len(self))
        return passage_from(json.loads(self.line(row)))

    def __iter__(self) -> Iterator[Passage]:
        for row in range(len(self)):
            yield self[row]

    def line(self, row: int) -> bytes:
        """The raw JSON line of a row, newline included."""
        return self.span(row, row + 1)

    def span(self, start: int, stop: int) -> bytes:
        """The raw lines of rows start … stop-1."""
        begin, end = int(self.offsets[start]), int(self.offsets[stop])
        data = os.pread(self._file.fileno(), end - begin, begin)
        if len(data) != end - begin:
            raise IndexCorruptError("the passage file is shorter than its offsets")
        return data

    def text(self, row: int) -> str:
        return json.loads(self.line(row))["text"]


class VectorFile:
    """The rows of a 2-D .npy file, read with pread when asked for (see PassageTable for why).

    Indexing with an int, a slice or a list/array of rows gives a NumPy array, as a loaded array would.
    """

    def __init__(self, path: Path) -> None:
        self._file = path.open("rb")
        version = np.lib.format.read_magic(self._file)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(self._file)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(self._file)
        if len(shape) != 2 or fortran or dtype.hasobject:
            raise ValueError(f"{path.name} is not a 2-D C-ordered numeric array")
        self.shape: tuple[int, int] = shape
        self.dtype = dtype
        self.ndim = 2
        self._offset = self._file.tell()
        self._row_bytes = shape[1] * dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step == 1:
                return self._run(start, max(start, stop))
            key = range(start, stop, step)
        if np.ndim(key) == 0:
            row = operator.index(key)
            row += len(self) if row < 0 else 0
            if not 0 <= row < len(self):
                raise IndexError(f"vector row {row} out of range")
            return self._run(row, row + 1)[0]
        rows = np.asarray(key, dtype=np.int64).reshape(-1)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError("vector row out of range")
        # One read per run of consecutive rows: a passage's sentences are mostly neighbours.
        wanted = np.unique(rows)
        out = np.empty((len(wanted), self.shape[1]), dtype=self.dtype)
        breaks = np.flatnonzero(np.diff(wanted) != 1) + 1
        at = 0
        for run in np.split(wanted, breaks) if len(wanted) else []:
            out[at : at + len(run)] = self._run(int(run[0]), int(run[-1]) + 1)
            at += len(run)
        return out[np.searchsorted(wanted, rows)]

    def _run(self, start: int, stop: int) -> np.ndarray:
        size = (stop - start) * self._row_bytes
        data = os.pread(self._file.fileno(), size, self._offset + start * self._row_bytes)
        if len(data) != size:
            raise IndexCorruptError("a vector file is shorter than its header says")
        return np.frombuffer(data, dtype=self.dtype).reshape(stop - start, self.shape[1])


class RowTable(Sequence[tuple[int, ...]]):
    """For each passage, the rows of its sentences in the sentence table (a flat array + offsets)."""

    def __init__(self, flat: np.ndarray, offsets: np.ndarray) -> None:
        self.flat = flat
        self.offsets = offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @overload
    def __getitem__(self, row: int) -> tuple[int, ...]: ...
    @overload
    def __getitem__(self, row: slice) -> list[tuple[int, ...]]: ...
    def __getitem__(self, row: int | slice) -> tuple[int, ...] | list[tuple[int, ...]]:
        if isinstance(row, slice):
            return [self[i] for i in range(*row.indices(len(self)))]
        row = passage_row(row, len(self))
        return tuple(self.flat[self.offsets[row] : self.offsets[row + 1]].tolist())

    def block(self, start: int, stop: int) -> np.ndarray:
        """The flat sentence rows of passages start … stop-1."""
        return self.flat[self.offsets[start] : self.offsets[stop]]


def passage_from(record: dict[str, Any]) -> Passage:
    return Passage(
        id=record["id"],
        article_id=record["article_id"],
        start=record["start"],
        end=record["end"],
        text=record["text"],
        sentences=tuple(Sentence(s, e) for s, e in record["sentences"]),
    )


def passage_line(passage: Passage) -> bytes:
    record = {
        "id": passage.id,
        "article_id": passage.article_id,
        "start": passage.start,
        "end": passage.end,
        "text": passage.text,
        "sentences": [[s.start, s.end] for s in passage.sentences],
    }
    return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")


# --- writing the tables (into a version folder being built) ---------------------------------


def runs(rows: np.ndarray) -> list[tuple[int, int]]:
    """Increasing rows as [start, stop) runs of consecutive numbers."""
    if len(rows) == 0:
        return []
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [len(rows)]])
    return [(int(rows[a]), int(rows[b - 1]) + 1) for a, b in zip(starts, stops, strict=True)]


def write_lines(staging: Path, blocks: list[bytes]) -> None:
    with (staging / PASSAGES).open("wb") as handle:
        for block in blocks:
            handle.write(block)


def write_offsets(staging: Path, lengths: list[np.ndarray]) -> None:
    """Byte offsets of the lines (n + 1), from their lengths."""
    sizes = np.concatenate([np.zeros(1, dtype=np.int64), *[np.asarray(x, dtype=np.int64) for x in lengths]])
    np.save(staging / PASSAGE_OFFSETS, np.cumsum(sizes), allow_pickle=False)


def write_sentence_rows(staging: Path, per_passage: list[np.ndarray]) -> None:
    lengths = np.array([len(r) for r in per_passage], dtype=np.int64)
    flat = np.concatenate(per_passage).astype(np.int32) if per_passage else np.zeros(0, dtype=np.int32)
    np.save(staging / SENTENCE_ROWS, flat, allow_pickle=False)
    np.save(staging / SENTENCE_ROW_OFFSETS, np.concatenate([[0], np.cumsum(lengths)]), allow_pickle=False)


def write_gathered(path: Path, old: np.ndarray, rows: np.ndarray, new: np.ndarray, dtype: type) -> None:
    """old[rows] then new, written in slices (old may be a VectorFile; no copy of it is held whole)."""
    width = old.shape[1] if old.ndim == 2 else new.shape[1]
    out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(len(rows) + len(new), width))
    step = 65536
    for start in range(0, len(rows), step):
        stop = min(start + step, len(rows))
        out[start:stop] = old[rows[start:stop]]
    out[len(rows) :] = new.astype(dtype)
    out.flush()
    del out


def sentence_table_keys(passages: list[Passage], rows: list[tuple[int, ...]], count: int) -> np.ndarray:
    """The key of each sentence row, from the passages that hold it."""
    keys = np.zeros((count, KEY_BYTES), dtype=np.uint8)
    done = np.zeros(count, dtype=bool)
    for passage, passage_rows in zip(passages, rows, strict=True):
        for text, row in zip(passage.sentence_texts(), passage_rows, strict=True):
            if not done[row]:
                keys[row] = np.frombuffer(text_key(text), dtype=np.uint8)
                done[row] = True
    return keys


def write_kept_and_new_passages(
    staging: Path, table: PassageTable, kept_runs: list[tuple[int, int]], passages: list[Passage]
) -> None:
    """The passage lines and their offsets: kept runs copied as bytes, then the new passages."""
    new_lines = [passage_line(p) for p in passages]
    kept_lines = [table.span(a, b) for a, b in kept_runs]
    write_lines(staging, [*kept_lines, b"".join(new_lines)])
    kept_lengths = [np.diff(table.offsets[a : b + 1]) for a, b in kept_runs]
    write_offsets(staging, [*kept_lengths, np.array([len(x) for x in new_lines], dtype=np.int64)])


def renumbered_sentence_rows(
    rows: RowTable,
    kept_runs: list[tuple[int, int]],
    keep_sentences: np.ndarray,
    old_sentences: int,
    new_rows: list[tuple[int, ...]],
) -> list[np.ndarray]:
    """Each passage's sentence rows in the new sentence table: those of kept passages renumbered
    (kept sentence vectors come first, in `keep_sentences` order), then the new passages' own."""
    remap = np.full(old_sentences, -1, dtype=np.int64)
    remap[keep_sentences] = np.arange(len(keep_sentences))
    kept_rows = [
        np.split(remap[rows.block(a, b)], np.diff(rows.offsets[a : b + 1]).cumsum()[:-1])
        for a, b in kept_runs
    ]
    per_passage = [r for block in kept_rows for r in block] + [
        np.asarray(r, dtype=np.int64) for r in new_rows
    ]
    if any(len(r) and int(r.min()) < 0 for r in per_passage):
        raise IndexCorruptError("an update lost a sentence vector it needs")
    return per_passage
