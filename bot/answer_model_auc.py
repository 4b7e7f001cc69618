"""Scratch measurement for the answer-model experiment (docs/QUALITY.md): AUC of the model's best
logit against the fitted decision, on the fit cache of `python -m bot.fit_reader --cache /tmp/cases.json`.

    python -m bot.answer_model_auc WEIGHTS_DIR N ours
"""

import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from bot.answer_model import AnswerModel
from bot.fit_reader import case_from_json, confidences, probabilities
from bot.reader_model import ReaderModel

am = AnswerModel.load(Path(sys.argv[1]) / "weights.safetensors")
N = int(sys.argv[2])
which = sys.argv[3] if len(sys.argv) > 3 else "ours"
cases = [case_from_json(c) for c in json.loads(Path("/tmp/cases.json").read_text())]
cases = [c for c in cases if c.source == which or which == "all"]
if which == "squad":
    import random

    random.Random(1).shuffle(cases)
    cases = cases[:400]
model = ReaderModel.load()
conf = confidences(cases, model)
out = []
for c, cf in zip(cases, conf, strict=True):
    if not c.rows:
        out.append(
            dict(
                kind=c.kind,
                ans=c.answerable,
                off=c.off_topic,
                conf=cf,
                zmax=-10,
                cov=False,
                zhit=False,
                phit=False,
                rhit=False,
            )
        )
        continue
    rows = np.asarray(c.rows)
    proxy = rows[:, 0] + rows[:, 3]
    top = np.argsort(-proxy)[:N]
    z = am.logits(c.text, [c.sentences[i] for i in top])
    p = probabilities(model.sentence, c)
    lab = np.asarray(c.labels)
    out.append(
        dict(
            kind=c.kind,
            ans=c.answerable,
            off=c.off_topic,
            conf=cf,
            zmax=float(z.max()),
            cov=bool(lab[top].any()),
            zhit=bool(lab[top[int(np.argmax(z))]]),
            phit=bool(lab[top[0]]),
            rhit=bool(lab[int(np.argmax(p))]),
        )
    )
Path(f"/tmp/ce_out_{which}.json").write_text(json.dumps(out))
ans = [r for r in out if r["ans"]]
print(
    which,
    "answerable",
    len(ans),
    {k: round(float(np.mean([r[k] for r in ans])), 3) for k in ("cov", "zhit", "phit", "rhit")},
)
kinds = sorted({r["kind"] for r in out if not r["ans"]})
for kinds_ in [(k,) for k in kinds] + [
    tuple(k for k in kinds if k in ("near-topic", "false-premise", "other-company"))
]:
    sel = [r for r in out if (r["ans"] or r["kind"] in kinds_) and not r["off"]]
    y = [r["ans"] for r in sel]
    if len(set(y)) < 2:
        continue
    print(
        kinds_,
        len(sel) - sum(y),
        "AUC conf",
        round(roc_auc_score(y, [r["conf"] for r in sel]), 3),
        "AUC zmax",
        round(roc_auc_score(y, [r["zmax"] for r in sel]), 3),
        "AUC conf+z",
        round(roc_auc_score(y, [np.log(r["conf"] / (1 - r["conf"])) + 0.5 * r["zmax"] for r in sel]), 3),
    )
