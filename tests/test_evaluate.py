"""`eval`'s figures on a question file, with a scripted engine: no model, fast."""

from __future__ import annotations

import json
from pathlib import Path

from bot.evaluate import evaluate, read_questions
from bot.models import Answer, Citation, Source

SOURCE = Source(id="a", title="T", outlet=None, date=None, url=None, path="a.md")
ARTICLE = "Palantir has been working with ICE since 2014 when Obama was president. Palantir runs on AWS."


def _answer(question: str, quote: str | None) -> Answer:
    if quote is None:
        return Answer(question=question, abstained=True, summary="not covered", citations=())
    citation = Citation(n=1, passage_text=ARTICLE, quote=quote, score=1.0, sources=(SOURCE,))
    return Answer(question=question, abstained=False, summary=quote, citations=(citation,))


def test_a_false_premise_is_handled_when_declined_or_contradicted_first(tmp_path: Path) -> None:
    premises = [
        ("why did palantir start with ice under trump", "Palantir has been working with ICE since 2014"),
        ("why did palantir leave aws", "Palantir runs on AWS"),
        ("why did obama ban palantir", "Palantir has been working with ICE since 2014"),
    ]
    records = [
        {"id": str(i), "kind": "false-premise", "question": q, "unanswerable": True, "contradiction": [c]}
        for i, (q, c) in enumerate(premises)
    ]
    records.append({"id": "n", "kind": "near-topic", "question": "who is the ceo", "unanswerable": True})
    # A false premise the articles don't contradict is handled only by declining it.
    records.append({"id": "u", "kind": "false-premise", "question": "why did ice quit", "unanswerable": True})
    path = tmp_path / "q.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records), encoding="utf-8")
    replies = {
        # The contradiction quoted first (normalised: case and curly quotes don't matter).
        premises[0][0]: "Palantir has been working with ICE since 2014 when Obama was president.",
        premises[1][0]: None,  # declined
        premises[2][0]: "Palantir runs on AWS.",  # answered with something else: wrong
        "who is the ceo": "Palantir runs on AWS.",
        "why did ice quit": "Palantir runs on AWS.",
    }
    report = evaluate(
        read_questions(path),
        ask=lambda q: _answer(q, replies[q]),
        retrieve=lambda q: [ARTICLE],
        source_text=lambda p: ARTICLE,
    )
    false_premise = report.by_kind["false-premise"]
    assert false_premise["declined"] == 1 / 4
    assert false_premise["declined_or_contradicted"] == 2 / 4
    # A kind without contradictions to match gets no such figure.
    assert "declined_or_contradicted" not in report.by_kind["near-topic"]
