"""Crash safety: `index build` and `index update` killed with SIGKILL at random points, many times.

After every kill the live index must load and answer — the previous one or the new one, never a
mix — and the corpus must be byte for byte as it was. Half of the kills fall anywhere in the run
(mostly start-up, where nothing is at stake); the other half are aimed at the dangerous part: a
random moment after the new version's staging folder appears, while files are written and CURRENT
is swapped. The CLI runs as a real process (tests/crash_runner.py: the CLI with the fake model).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from bot import store
from bot.config import Settings
from bot.corpus import corpus_hashes
from bot.engine import Engine
from bot.manifest import CURRENT, read_manifest
from tests.crash_runner import command
from tests.fakes import FAKE_MODEL, HashEmbedder

KILLS = 30
SEED = 6
EXTRA = Path(__file__).resolve().parent / "data" / "extra-article.md"


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def live_version(index: Path) -> str:
    return (index / CURRENT).read_text(encoding="utf-8").strip()


def leftovers(index: Path) -> list[str]:
    """Half-written versions and pointer files of an interrupted run."""
    return sorted(p.name for p in index.iterdir() if p.name.startswith((".build-", f".{CURRENT}.")))


def start(settings: Settings, args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command(settings.corpus, settings.index, *args),
        cwd=settings.corpus.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def kill_after(process: subprocess.Popen[bytes], seconds: float) -> bool:
    """SIGKILL the process after `seconds` (unless it ended first); True if it was killed."""
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        return True
    return False


def kill_while_writing(process: subprocess.Popen[bytes], index: Path, delay: float) -> bool:
    """SIGKILL the process `delay` seconds after it starts writing a new version; True if it was killed."""
    # Staging folders of earlier killed runs stay until a run finishes: only a new one counts.
    earlier = set(leftovers(index))
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        if any(name.startswith(".build-") and name not in earlier for name in os.listdir(index)):
            return kill_after(process, delay)
        time.sleep(0.0005)
    return kill_after(process, 0)


def test_sigkill_during_build_and_update_never_leaves_a_broken_index(built: Settings) -> None:
    rng = random.Random(SEED)
    embedder = HashEmbedder()
    extra = built.corpus / "extra-article.md"
    # Kill delays scale with how long a whole run takes on this machine: with a fixed range, a fast
    # machine finishes most runs before the kill and the test proves little (seen in CI).
    whole_run = _seconds_of_a_whole_run(built)
    began = time.monotonic()
    outcomes: Counter[str] = Counter()
    for kill in range(KILLS):
        if kill % 3 == 0:  # change the corpus now and then, so that an update has work to do
            if extra.exists():
                extra.unlink()
            else:
                shutil.copy(EXTRA, extra)
        args = ["index", "build"] if kill % 2 else ["index", "update"]
        corpus_before = tree(built.corpus)
        leftovers_before = set(leftovers(built.index))
        version_before = live_version(built.index)
        articles_before = set(read_manifest(built.index).articles)

        process = start(built, args)
        if (kill // 2) % 2 == 0:  # build and update each get both kinds of kill
            killed = kill_after(process, rng.uniform(0.0, 1.3 * whole_run))
        else:
            killed = kill_while_writing(process, built.index, rng.uniform(0.0, 0.015))
        if not killed:
            assert process.returncode == 0, process.stderr.read() if process.stderr else ""

        assert tree(built.corpus) == corpus_before, f"kill {kill}: the corpus changed"
        index = store.load(built.index, FAKE_MODEL)  # raises if the live index is broken
        answer = Engine(index, embedder).answer("What does Palantir run on?")
        assert answer.citations and "Palantir" in answer.citations[0].passage_text
        assert {s.id for c in answer.citations for s in c.sources} <= set(index.manifest.articles)
        if live_version(built.index) == version_before:
            assert set(index.manifest.articles) == articles_before
            outcome = "previous index"
        else:
            assert set(index.manifest.articles) == set(corpus_hashes(built.corpus)), "a new but stale index"
            outcome = "new index"
        if not killed:
            outcomes[f"finished: {outcome}"] += 1
        elif set(leftovers(built.index)) - leftovers_before or outcome == "new index":
            outcomes[f"killed while writing: {outcome}"] += 1
        else:
            outcomes[f"killed before writing: {outcome}"] += 1

    report = ", ".join(f"{n} × {what}" for what, n in sorted(outcomes.items()))
    print(f"\n{KILLS} runs in {time.monotonic() - began:.1f} s: {report}")
    killed = sum(n for what, n in outcomes.items() if what.startswith("killed"))
    assert killed >= KILLS // 2, report
    assert outcomes["killed while writing: previous index"] >= 3, f"too few kills hit the writing: {report}"
    assert any(what.endswith("new index") for what in outcomes), report

    # The next run cleans up after the crashed ones and leaves one complete version.
    final = subprocess.run(
        command(built.corpus, built.index, "index", "update"), cwd=built.corpus.parent, capture_output=True
    )
    assert final.returncode == 0, final.stderr
    assert leftovers(built.index) == []
    assert [p.name for p in built.index.iterdir() if p.name.startswith("v-")] == [live_version(built.index)]


def _seconds_of_a_whole_run(settings: Settings) -> float:
    """The shortest of three uninterrupted `index build` runs, start-up included."""
    times = []
    for _ in range(3):
        began = time.monotonic()
        finished = subprocess.run(
            command(settings.corpus, settings.index, "index", "build"),
            cwd=settings.corpus.parent,
            capture_output=True,
        )
        assert finished.returncode == 0, finished.stderr
        times.append(time.monotonic() - began)
    return min(times)
