"""Replicas and Redis: a measurement, not a test (127.0.0.1 only).

Two parts, each next to its floor in the same run:

- **state cost per answer**: the shared-state calls one answered question makes (rate limit, the
  follow-up read and write, remembering the answer behind its buttons, claiming and finishing the
  webhook update), timed in Redis (a redis-server of its own on a free loopback port) and in
  memory, the floor, in alternating rounds so that both see the same machine;
- **answers/s and latency with 1 and with 2 replicas**: real `protest-bot telegram` processes in
  webhook mode behind the round-robin proxy of tests/replicas.py, sharing that Redis, fed by the
  fake Bot API's webhook delivery; N users each ask M questions one after another (closed loop,
  as benchmarks/load_telegram.py does), limits lifted.

    python benchmarks/replicas.py --users 8 --questions 25 --json replicas.json
    python benchmarks/replicas.py --model real --users 8 --questions 25     # the real model

`--model fake` (the default) runs the replicas with the hash embedder: what is measured is the
bot's own path (webhook, state, rendering, sending), not the model's encode.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.load_telegram import load_questions, machine, percentile, user  # noqa: E402
from tests.redis_server import REDIS_SERVER, RedisServer  # noqa: E402
from tests.replicas import Cluster  # noqa: E402


def real_answer(folder: Path) -> Any:
    """A real answer of 9 citations (the shipped articles, the fake model): what Redis stores."""
    from bot.config import Settings
    from bot.indexer import update_from_settings
    from bot.startup import open_engine
    from tests.conftest import copy_corpus
    from tests.fakes import FAKE_MODEL, install_fake_embedder

    root = folder / "answer"
    settings = Settings(corpus=copy_corpus(root / "corpus"), index=root / "index", model=FAKE_MODEL)
    update_from_settings(settings, install_fake_embedder())
    return open_engine(settings).answer("How many employees signed the letter?", 9)


def state_cost(redis_url: str, reply: Any, rounds: int, per_round: int) -> dict[str, Any]:
    """Milliseconds of shared-state calls per answered question, Redis against memory."""
    from bot.redis_state import RedisState
    from bot.shared_state import MemoryState, SharedState
    from bot.telegram.state import Shown

    async def one_answer(state: SharedState, n: int) -> None:
        await state.limiter("tg", 1_000_000, 1_000_000).check(n % 50)
        await state.claim(n, 10)
        await state.last_answer(n % 50)
        await state.remember(n % 50, reply)
        shown = Shown(reply)
        shown.next_page(3)
        await state.add_answer(shown)
        await state.finish(n)

    async def timed(state: SharedState, start: int) -> list[float]:
        times = []
        for n in range(start, start + per_round):
            began = time.perf_counter()
            await one_answer(state, n)
            times.append((time.perf_counter() - began) * 1000)
        return times

    async def run() -> dict[str, list[float]]:
        states: dict[str, SharedState] = {"memory": MemoryState(), "redis": RedisState(redis_url)}
        results: dict[str, list[float]] = {"memory": [], "redis": []}
        await timed(states["redis"], 10_000_000)  # warm: connection, scripts loaded
        for round_ in range(rounds):
            order = ["memory", "redis"] if round_ % 2 == 0 else ["redis", "memory"]
            for name in order:
                results[name] += await timed(states[name], round_ * per_round)
        await states["redis"].close()
        return results

    results = asyncio.run(run())
    report: dict[str, Any] = {name: _summary(times) for name, times in results.items()}
    report["redis_bytes"] = _redis_bytes(redis_url)
    return report


def _redis_bytes(redis_url: str) -> dict[str, int]:
    """What one key of each kind costs in Redis (MEMORY USAGE), for sizing."""
    import redis as redis_client

    client = redis_client.Redis.from_url(redis_url)
    sizes = {}
    for kind in ("answer", "chat", "update", "rate:tg:user"):
        key = next(iter(client.scan_iter(f"protest-bot:{kind}:*", count=1000)), None)
        sizes[kind] = int(client.memory_usage(key) or 0) if key is not None else 0
    return sizes


def throughput(folder: Path, redis: RedisServer, replicas: int, args: argparse.Namespace) -> dict[str, Any]:
    """A closed-loop run against `replicas` replicas."""
    import redis as redis_client

    from bot.config import Settings
    from bot.indexer import update_from_settings
    from tests.conftest import copy_corpus

    # A new fake Bot API numbers its updates from the start again, like a new bot: an empty Redis.
    redis_client.Redis.from_url(redis.url).flushall()
    root = folder / f"replicas-{replicas}"
    settings = Settings(corpus=copy_corpus(root / "corpus"), index=root / "index", model=_model(args.model))
    update_from_settings(settings, _embedder(args.model, settings))
    cluster = Cluster(root, settings.corpus, settings.index, redis, count=replicas, rate_limit=1_000_000,
                      model=_model(args.model))  # fmt: skip
    questions = load_questions()
    print(f"{replicas} replica(s) up: {args.users} users x {args.questions} questions", file=sys.stderr)
    try:
        answers: list[int] = []
        warm = threading.Thread(target=user, args=(cluster.api, 999, questions, 3, 120, []))
        warm.start()
        warm.join()
        started = time.monotonic()
        results: list[Any] = []
        threads = [
            threading.Thread(
                target=lambda n=n: results.append(
                    user(cluster.api, n, questions, args.questions, 120, answers)
                )
            )
            for n in range(args.users)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        latencies = [latency for result in results for latency in result.latencies]
        served = [replica for _uid, replica, status in cluster.proxy.tries if status == 200]
        return {
            "replicas": replicas,
            "questions": args.users * args.questions,
            "answered": len(latencies),
            "lost": sum(result.lost for result in results),
            "answers_per_s": round(len(latencies) / elapsed, 2),
            "latency_s": {
                "p50": round(percentile(latencies, 0.5), 3),
                "p99": round(percentile(latencies, 0.99), 3),
            },
            "share_per_replica": [round(served.count(r) / max(len(served), 1), 3) for r in range(replicas)],
        }
    finally:
        cluster.stop()


def _model(model: str) -> str:
    return "test-hash-embedder" if model == "fake" else "sentence-transformers/all-MiniLM-L6-v2"


def _embedder(model: str, settings: Any) -> Any:
    if model == "fake":
        from tests.fakes import install_fake_embedder

        return install_fake_embedder()
    from bot.embed import load_embedder

    return load_embedder(settings.model)


def _summary(times: list[float]) -> dict[str, float]:
    return {
        "n": len(times),
        "median_ms": round(statistics.median(times), 3),
        "p99_ms": round(percentile(times, 0.99), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--questions", type=int, default=25, help="questions per user")
    parser.add_argument("--model", choices=("fake", "real"), default="fake")
    parser.add_argument("--rounds", type=int, default=10, help="alternating rounds of the state-cost part")
    parser.add_argument("--per-round", type=int, default=200)
    parser.add_argument("--json", type=Path, help="write the report here too")
    args = parser.parse_args(argv)
    if REDIS_SERVER is None:
        print("redis-server is not installed (apt-get install redis-server)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as folder:
        redis = RedisServer(Path(folder) / "redis").start()
        try:
            report = {
                "machine": machine(),
                "model": args.model,
                "state_cost_per_answer": state_cost(
                    redis.url, real_answer(Path(folder)), args.rounds, args.per_round
                ),
                "throughput": [throughput(Path(folder), redis, n, args) for n in (1, 2)],
            }
        finally:
            redis.stop()
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0 if all(run["lost"] == 0 for run in report["throughput"]) else 1


if __name__ == "__main__":
    sys.exit(main())
