"""`python -m benchmarks [--quick] [--only SECTION …] [--json FILE] [--fresh]` (see docs/BENCHMARKS.md)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from benchmarks import report
from benchmarks.run import PLANS, SECTIONS, run
from benchmarks.vectors import DEFAULT_CACHE

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="1k and 10k passages, fewer repetitions (~3 min)")
    mode.add_argument("--smoke", action="store_true", help="tiny inputs, every section once (for tests)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--json", type=Path, help="where to write the results (default benchmarks/results/)")
    parser.add_argument(
        "--cache",
        type=Path,
        default=DEFAULT_CACHE,
        help=f"embedding and index cache (default {DEFAULT_CACHE})",
    )
    parser.add_argument("--fresh", action="store_true", help="rebuild large indexes kept from earlier runs")
    parser.add_argument("--quiet", action="store_true", help="no progress log on stderr")
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("sentence_transformers", "transformers", "faiss", "bm25s", "httpx", "bot"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    plan = PLANS["smoke" if args.smoke else "quick" if args.quick else "full"]
    results = run(plan, args.cache, tuple(args.only or SECTIONS), fresh=args.fresh)
    target = args.json or RESULTS / f"latest-{plan.name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
    print(report.render(results))
    print(f"\nresults: {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
