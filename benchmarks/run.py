"""The benchmark: every cost a user feels, each measured next to its floor in the same run.

Sections (each a method of `Bench`, each adding one entry to the results):

- startup:     `--help`, `index status`, `sources` wall time, and whether they import torch
- cold:        `protest-bot ask` in a new process vs. a process that only loads the model
- served:      `protest-bot ask --server URL` against a warm `protest-bot serve`, beside the cold `ask`
- warm:        questions in one process, split into stages, vs. the model's own `encode`
- build:       `index build` with the real model vs. raw `encode` of the same passages;
               then the pipeline alone (vectors cached or derived) at every corpus size
- incremental: one article added to indexes of 10 … 10,000 articles vs. a full build
- memory:      peak RSS of a `chat` process at every size
- ann:         recall@10 and latency of float16 exact and IVF search against float32 exact

See docs/BENCHMARKS.md for how to run it and what each figure means.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import measure
from benchmarks.measure import Timer, run_process, summary
from benchmarks.synth import SHIPPED_CORPUS, Generator, sentence_pool, write_corpus
from benchmarks.vectors import BenchEmbedder, VectorCache, fidelity

log = logging.getLogger("benchmarks")

GENERATOR_VERSION = 1
ROOT = Path(__file__).resolve().parent.parent
DEV_QUESTIONS = ROOT.parent / "shared" / "eval" / "dev-questions.jsonl"
SQUAD_QUESTIONS = ROOT.parent / "shared" / "external" / "squad" / "questions.jsonl"
# The modules whose code decides what an index build produces: a cached large index is reused
# only while they are unchanged.
INDEXING_MODULES = ("indexer", "store", "chunk", "clean", "sentences", "corpus", "lexical", "models")
COLD_QUESTION = "How many employees signed the letter?"
FLOOR_PROGRAM = (
    "from sentence_transformers import SentenceTransformer\n"
    "import sys\n"
    "SentenceTransformer(sys.argv[1], device='cpu', local_files_only=True)\n"
)


@dataclass
class Plan:
    """How much to measure: sizes (synthetic articles, ~10 passages each) and repetitions."""

    name: str
    sizes: list[int]  # synthetic articles for the cost curve (the shipped corpus is always measured)
    incremental: list[int]  # index sizes, in articles, one article is added to
    derive_from: int  # sizes from this many articles on get derived vectors (vectors.py)
    reuse_from: int  # sizes from this many articles on reuse an index built by an earlier run
    reps: int  # repetitions of each process-level measurement
    warm_rounds: int  # passes over the question set per size
    warm_budget: float  # seconds per size for warm questions (at least one round)
    build_articles: int  # synthetic articles (+ the shipped ones) for the real-model build
    ann_queries: int
    memory_questions: int = 5
    synthetic_questions: int = 25
    startup_reps: int = 5
    max_questions: int = 0  # 0: all of them (dev set, plus SQuAD questions on synthetic corpora)
    cold_reps: int = 0  # `ask` runs on the shipped corpus (0: reps); one on each synthetic corpus
    warm_min_samples: int = 20  # questions answered at each size even past the time budget


PLANS = {
    "full": Plan("full", [100, 1000, 10000], [10, 1000, 10000], 1000, 10000, 3, 5, 25.0, 6, 200, cold_reps=4),
    "quick": Plan("quick", [100, 1000], [10, 1000], 1000, 10**9, 2, 2, 10.0, 3, 100),
    # For the test suite: every section runs once on tiny inputs; no model floor is meaningful here.
    "smoke": Plan("smoke", [2], [2], 10**9, 10**9, 1, 1, 1.0, 1, 10, 2, 5, 1, max_questions=5),
}


@dataclass
class Prepared:
    """A corpus and its built index, and how the build went."""

    name: str
    articles: int
    corpus: Path
    index: Path
    build: dict[str, Any] = field(default_factory=dict)


class Bench:
    """One benchmark run: the model, the caches, the corpora, and the results so far."""

    def __init__(
        self, plan: Plan, cache_dir: Path, work_dir: Path | None = None, fresh: bool = False
    ) -> None:
        from bot.config import load_settings
        from bot.embed import load_embedder

        self.plan = plan
        self.cache_dir = cache_dir
        self.fresh = fresh
        self.settings = load_settings()
        self.work = work_dir or Path(
            os.environ.get("PROTEST_BOT_BENCH_WORK", cache_dir / "work" / f"run-{os.getpid()}")
        )
        self.persistent = cache_dir / "indexes"
        self.work.mkdir(parents=True, exist_ok=True)
        began = time.perf_counter()
        self.model = load_embedder(self.settings.model)
        self.model_load_seconds = time.perf_counter() - began
        self.cache = VectorCache(cache_dir, self.model.name, self.model.dimension)
        self.pool = sentence_pool()
        self.generator = Generator(self.pool)
        self.embedder = BenchEmbedder(self.model, self.cache, self.generator)
        self.results: dict[str, Any] = {
            "plan": asdict(plan),
            "machine": measure.machine(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "commit": _git_commit(),
            "model_load_seconds": round(self.model_load_seconds, 2),
            "notes": [],
        }
        self.prepared: dict[str, Prepared] = {}

    # Corpora and indexes -----------------------------------------------------------------------

    def fingerprint(self) -> str:
        from bot.manifest import FORMAT_VERSION

        digest = hashlib.sha1(f"{GENERATOR_VERSION}|{FORMAT_VERSION}|{self.model.name}".encode())
        digest.update(f"{self.settings.chunk_tokens}|{self.settings.chunk_overlap}".encode())
        digest.update(str(self.settings.exact_search_limit).encode())
        for name in INDEXING_MODULES:
            digest.update((ROOT / "bot" / f"{name}.py").read_bytes())
        return digest.hexdigest()[:12]

    def shipped(self) -> Prepared:
        """The shipped corpus and its index (vectors cached after the first run)."""
        if "shipped" not in self.prepared:
            folder = self.work / "shipped"
            corpus = folder / "corpus"
            shutil.rmtree(folder, ignore_errors=True)
            corpus.mkdir(parents=True)
            for path in SHIPPED_CORPUS.glob("*.md"):
                if path.name != "README.md":
                    shutil.copy(path, corpus / path.name)
            prepared = Prepared("shipped", 0, corpus, folder / "index")
            prepared.build = self.build(prepared, derive=False)
            self.prepared["shipped"] = prepared
        return self.prepared["shipped"]

    def synthetic(self, articles: int) -> Prepared:
        """A synthetic corpus of `articles` articles (+ the shipped five) and its index."""
        name = f"syn-{articles}"
        if name in self.prepared:
            return self.prepared[name]
        derive = articles >= self.plan.derive_from
        reuse = articles >= self.plan.reuse_from and not self.fresh
        folder = (
            self.persistent if articles >= self.plan.reuse_from else self.work
        ) / f"{name}-{self.fingerprint()}"
        prepared = Prepared(name, articles, folder / "corpus", folder / "index")
        record = folder / "build.json"
        if reuse and record.exists() and (prepared.index / "CURRENT").exists():
            prepared.build = {**json.loads(record.read_text()), "reused_from_earlier_run": True}
            log.info("%s: reusing the index built %s", name, prepared.build.get("measured_at"))
        else:
            shutil.rmtree(folder, ignore_errors=True)
            for stale in folder.parent.glob(f"{name}-*"):  # built by other code: never reusable again
                shutil.rmtree(stale, ignore_errors=True)
            log.info("%s: writing the corpus", name)
            write_corpus(prepared.corpus, self.generator, articles)
            prepared.build = self.build(prepared, derive=derive)
            record.write_text(json.dumps(prepared.build, indent=1))
        self.prepared[name] = prepared
        return prepared

    def recipes(self, articles: int) -> None:
        """Know the sources of every sentence of the first `articles` articles (to derive vectors for a
        corpus an earlier run wrote): generating them again is deterministic and takes seconds."""
        for _ in self.generator.articles(articles):
            pass

    def build(self, prepared: Prepared, derive: bool) -> dict[str, Any]:
        """A full build with cached or derived vectors, split into stages; the embedder's time is
        reported apart, so `pipeline_seconds` is what the bot adds around the model."""
        from bot import indexer
        from bot.manifest import current_version, read_manifest

        log.info("%s: building the index (%s vectors)", prepared.name, "derived" if derive else "cached")
        self.embedder.derive = derive
        self.embedder.reset_counts()
        with _stage_timers() as stages:
            began = time.perf_counter()
            report = indexer.update_index(
                prepared.corpus,
                prepared.index,
                self.embedder,
                self.settings.chunk_tokens,
                self.settings.chunk_overlap,
                self.settings.exact_search_limit,
                full=True,
            )
            seconds = time.perf_counter() - began
        self.embedder.derive = False
        self.cache.save()
        manifest = read_manifest(prepared.index)
        embed = self.embedder.seconds
        return {
            "articles": report.articles,
            "passages": report.passages,
            "sentences": manifest.sentences,
            "texts_embedded": report.embedded,
            "vectors": dict(self.embedder.counts),
            "seconds": seconds,
            "embed_seconds": embed,
            "pipeline_seconds": seconds - embed,
            "stages": {**stages.seconds(), "embed (cache/derive)": embed},
            "index_bytes": measure.folder_bytes(current_version(prepared.index)),
            "dense": manifest.search,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "commit": self.results["commit"],
        }

    # Questions ---------------------------------------------------------------------------------

    def questions(self, synthetic: bool) -> list[str]:
        dev = [
            json.loads(line)["question"] for line in DEV_QUESTIONS.read_text().splitlines() if line.strip()
        ]
        questions = dev + squad_questions(self.plan.synthetic_questions) if synthetic else dev
        return questions[: self.plan.max_questions] if self.plan.max_questions else questions

    # Sections ----------------------------------------------------------------------------------

    def startup(self) -> None:
        """Commands that must not load the model: wall time and whether torch is imported."""
        shipped = self.shipped()
        base = ["--corpus", str(shipped.corpus), "--index", str(shipped.index)]
        commands = {
            "--help": ["--help"],
            "index status": [*base, "index", "status"],
            "sources": [*base, "sources"],
        }
        out: dict[str, Any] = {}
        for label, args in commands.items():
            runs = [
                run_process([str(measure.VENV_BIN / "protest-bot"), *args])
                for _ in range(self.plan.startup_reps)
            ]
            traced = run_process([sys.executable, "-X", "importtime", "-m", "bot", *args])
            imported = {
                line.rsplit("|", 1)[-1].strip().split(".")[0]
                for line in traced.stderr.splitlines()
                if line.startswith("import time:")
            }
            out[label] = {
                **summary([r.seconds for r in runs]),
                "exit_codes": sorted({r.returncode for r in runs}),
                "imports_torch": "torch" in imported,
                "imports_faiss": "faiss" in imported,
                "imports_sentence_transformers": "sentence_transformers" in imported,
            }
        self.results["startup"] = out

    def cold(self) -> None:
        """`ask` in a new process (index on disk, page cache warm) vs. a process that loads the model."""
        from bot.embed import resolve_model

        source = resolve_model(self.settings.model)
        floor_argv = [sys.executable, "-c", FLOOR_PROGRAM, source]
        floor_env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
        targets = [self.shipped()] + [self.synthetic(n) for n in self.plan.sizes]
        floors: list[measure.Run] = []
        sizes: dict[str, Any] = {}
        for prepared in targets:
            argv = [
                str(measure.VENV_BIN / "protest-bot"),
                *("--corpus", str(prepared.corpus), "--index", str(prepared.index)),
                *("ask", COLD_QUESTION),
            ]
            asks = []
            reps = (self.plan.cold_reps or self.plan.reps) if prepared.name == "shipped" else 1
            for rep in range(reps):
                # Interleaved, alternating which goes first, so both see the same machine.
                if rep % 2:
                    floors.append(run_process(floor_argv, env=floor_env))
                asks.append(run_process(argv))
                if rep % 2 == 0:
                    floors.append(run_process(floor_argv, env=floor_env))
            failed = [r for r in asks if r.returncode != 0]
            if failed:
                self.note(f"cold ask on {prepared.name} failed: {failed[0].stderr.strip()[-300:]}")
            sizes[prepared.name] = {
                "passages": prepared.build.get("passages"),
                **summary([r.seconds for r in asks]),
            }
        floor = summary([r.seconds for r in floors])
        for entry in sizes.values():
            entry["over_floor_s"] = entry["median"] - floor["median"] if entry.get("n") else None
        self.results["cold"] = {
            "floor": floor,
            "floor_failed": sum(r.returncode != 0 for r in floors),
            "sizes": sizes,
        }

    def served(self) -> None:
        """`ask --server` to a warm `protest-bot serve` on the shipped corpus: the model is loaded once,
        in the server, so each `ask` costs a small process and one request (the issue asks ≤ 0.5 s)."""
        shipped = self.shipped()
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "PROTEST_BOT_CORPUS": str(shipped.corpus),
            "PROTEST_BOT_INDEX": str(shipped.index),
        }
        began = time.perf_counter()
        server = subprocess.Popen(
            [str(measure.VENV_BIN / "protest-bot"), "serve", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            ready = _wait_healthy(url, server, timeout=300)
            ready_s = time.perf_counter() - began
            argv = [str(measure.VENV_BIN / "protest-bot"), "ask", "--server", url, COLD_QUESTION]
            run_process(argv)  # the server's first question pays one-off costs (page cache, BM25 warm-up)
            asks = [run_process(argv) for _ in range(max(self.plan.startup_reps, 3))] if ready else []
            traced = run_process([sys.executable, "-X", "importtime", "-m", "bot", *argv[1:]])
        finally:
            server.terminate()
            server.wait(60)
        imported = {
            line.rsplit("|", 1)[-1].strip().split(".")[0]
            for line in traced.stderr.splitlines()
            if line.startswith("import time:")
        }
        if not ready or any(r.returncode for r in asks):
            self.note("served ask failed: the server did not become healthy or a question failed")
        self.results["served"] = {
            "server_ready_s": round(ready_s, 2) if ready else None,
            **summary([r.seconds for r in asks if r.returncode == 0]),
            "exit_codes": sorted({r.returncode for r in asks}),
            "imports_torch": "torch" in imported,
            "imports_sentence_transformers": "sentence_transformers" in imported,
        }

    def warm(self) -> None:
        """Questions in a long-running process, split by stage, each next to the model's own encode."""
        targets = [self.shipped()] + [self.synthetic(n) for n in self.plan.sizes]
        self.results["warm"] = {p.name: self.warm_one(p) for p in targets}
        # The largest size again with IVF in place of exact search: what a lower exact_search_limit does.
        largest = targets[-1]
        self.results["warm"][f"{largest.name} ivf"] = self.warm_one(largest, approximate=True)

    def warm_one(self, prepared: Prepared, approximate: bool = False) -> dict[str, Any]:
        from bot.render import answer_markup
        from bot.startup import open_engine

        settings = self.settings.model_copy(update={"corpus": prepared.corpus, "index": prepared.index})
        began = time.perf_counter()
        engine = open_engine(settings)
        load_seconds = time.perf_counter() - began
        if approximate:
            _use_ivf(engine.index)
        model = getattr(self.model, "_model", None)
        questions = self.questions(prepared.name != "shipped")

        def floor(question: str) -> None:
            model.encode(  # type: ignore[union-attr]
                [question],
                batch_size=64,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )

        stages: dict[str, list[float]] = {
            k: [] for k in ("embed", "search", "fuse", "read", "quote", "render", "other")
        }
        totals: list[float] = []
        floors: list[float] = []
        abstained = 0
        with _engine_timers(engine) as timers:
            for question in questions[:5]:  # warm-up: first calls allocate
                engine.answer(question)
                floor(question)
            timers.reset()
            deadline = time.perf_counter() + self.plan.warm_budget
            for round_ in range(self.plan.warm_rounds):
                if round_ and time.perf_counter() > deadline:
                    break
                for n, question in enumerate(questions):
                    if len(totals) >= self.plan.warm_min_samples and time.perf_counter() > deadline:
                        break
                    floor_first = (n + round_) % 2 == 0
                    if floor_first:
                        floors.append(_timed(lambda q=question: floor(q)))
                    timers.reset()
                    began = time.perf_counter()
                    answer = engine.answer(question)
                    rendered = time.perf_counter()
                    answer_markup(answer)
                    ended = time.perf_counter()
                    abstained += answer.abstained
                    if not floor_first:
                        floors.append(_timed(lambda q=question: floor(q)))
                    split = timers.take()
                    split["render"] = ended - rendered
                    split["other"] = (
                        (rendered - began)
                        - split["embed"]
                        - split["search"]
                        - split["fuse"]
                        - split["read"]
                        - split["quote"]
                    )
                    totals.append(ended - began)
                    for key, value in split.items():
                        stages[key].append(value)
        total, floor_summary = summary(totals), summary(floors)
        one_thread: dict[str, Any] = {}
        if prepared.name == "shipped":
            # Not the bot's setting (torch uses every core): how the floor moves on this busy machine.
            import torch

            before = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                one_thread = summary([_timed(lambda q=q: floor(q)) for q in questions])
            finally:
                torch.set_num_threads(before)
        return {
            "floor_torch_one_thread": one_thread,
            "passages": len(engine.index.passages),
            "dense": engine.index.manifest.search,
            "load_seconds": load_seconds,
            "questions": len(questions),
            "abstained_share": abstained / max(len(totals), 1),
            "total": total,
            "floor": floor_summary,
            "p50_over_floor": measure.ratio(total, floor_summary),
            "p99_over_floor_p99": (total["p99"] / floor_summary["p99"]) if floor_summary.get("n") else None,
            "stages": {k: summary(v) for k, v in stages.items()},
            "split_available": timers.available,
        }

    def build_throughput(self) -> None:
        """`index build` with the real model vs. one raw `encode` call on the same passage texts."""
        from bot import indexer
        from bot.chunk import chunk
        from bot.corpus import read_corpus
        from bot.manifest import read_manifest

        folder = self.work / "build-real"
        corpus = write_corpus(folder / "corpus", self.generator, self.plan.build_articles)
        tokens, overlap = self.settings.chunk_tokens, self.settings.chunk_overlap
        passages_made = [
            p
            for article in read_corpus(corpus)
            for p in chunk(article, tokens, overlap, self.model.count_tokens)
        ]
        passage_texts = [p.text for p in passages_made]
        # What a build embeds: every distinct passage and sentence text (the sentences serve the
        # sentence-level score and the quote); a second floor, for the work the pipeline adds.
        all_texts = sorted({t for p in passages_made for t in [p.text, *p.sentence_texts()]})
        model = getattr(self.model, "_model", None)
        timed = _TimedModel(self.model, set(passage_texts))
        builds: list[float] = []
        encodes: list[float] = []
        floors: list[float] = []
        floors_all: list[float] = []
        reports = []

        def build() -> None:
            began = time.perf_counter()
            reports.append(
                indexer.update_index(
                    corpus,
                    folder / "index",
                    timed,
                    tokens,
                    overlap,
                    self.settings.exact_search_limit,
                    full=True,
                )
            )
            builds.append(time.perf_counter() - began)
            encodes.append(timed.take())

        def raw_encode(texts: list[str], into: list[float]) -> Callable[[], None]:
            def step() -> None:
                began = time.perf_counter()
                model.encode(  # type: ignore[union-attr]
                    texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True,
                    show_progress_bar=False,
                )  # fmt: skip
                into.append(time.perf_counter() - began)

            return step

        floor, floor_all = raw_encode(passage_texts, floors), raw_encode(all_texts, floors_all)

        for rep in range(self.plan.reps):
            steps = (build, floor, floor_all)
            for step in steps if rep % 2 == 0 else steps[::-1]:
                step()
        manifest = read_manifest(folder / "index")
        passages = reports[0].passages
        if passages != len(passage_texts):
            self.note(f"the real build made {passages} passages, the floor encoded {len(passage_texts)}")
        build_rates = [passages / s for s in builds]
        floor_rates = [len(passage_texts) / s for s in floors]
        self.results["build"] = {
            "real": {
                "articles": reports[0].articles,
                "passages": passages,
                "sentences": manifest.sentences,
                "texts_embedded": reports[0].embedded,
                "build_seconds": summary(builds),
                "passages_per_s": summary(build_rates),
                "floor_seconds": summary(floors),
                "floor_passages_per_s": summary(floor_rates),
                "ratio_to_floor": measure.median(build_rates) / measure.median(floor_rates),
                "all_texts": len(all_texts),
                "floor_all_texts_seconds": summary(floors_all),
                "ratio_to_floor_all_texts": measure.median(floors_all) / measure.median(builds),
                "encode_seconds_in_build": summary(encodes),
                "pipeline_seconds": summary([b - e for b, e in zip(builds, encodes, strict=True)]),
                "tokens": timed.tokens,
                "model_seconds_per_token": measure.median(encodes) / max(timed.tokens.get("total", 1), 1),
            },
            "sizes": {},
        }

    def estimate(self, build: dict[str, Any]) -> dict[str, Any]:
        """A build record plus the model's time for its corpus, from this run's real build: seconds
        per word piece times the corpus's word pieces (passages and sentences at the real build's
        averages). The build itself used cached or derived vectors."""
        real = self.results.get("build", {}).get("real", {})
        per_token, tokens = real.get("model_seconds_per_token"), real.get("tokens", {})
        entry = dict(build)
        if per_token and tokens.get("passage_texts") and tokens.get("sentence_texts") and "passages" in entry:
            model = per_token * (
                entry["passages"] * tokens["passages"] / tokens["passage_texts"]
                + entry["sentences"] * tokens["sentences"] / tokens["sentence_texts"]
            )
            entry["model_seconds_estimated"] = model
            entry["full_build_seconds_estimated"] = model + entry["pipeline_seconds"]
            entry["passages_per_s_estimated"] = entry["passages"] / entry["full_build_seconds_estimated"]
        if entry.get("pipeline_seconds"):
            entry["pipeline_passages_per_s"] = entry["passages"] / entry["pipeline_seconds"]
        return entry

    def pipeline_curve(self) -> None:
        """Full builds at every size with vectors cached or derived: the work the bot adds to the model."""
        self.shipped()
        for articles in self.plan.sizes:
            self.synthetic(articles)
        sizes = self.results.setdefault("build", {}).setdefault("sizes", {})
        for name, prepared in self.prepared.items():
            sizes[name] = self.estimate(prepared.build)

    def incremental(self) -> None:
        """Add one article to indexes of N articles; compare with a full build of the same corpus."""
        from bot import indexer, store

        out: dict[str, Any] = {}
        sizes = self.results.get("build", {}).get("sizes", {})
        for articles in self.plan.incremental:
            base = self.synthetic(articles) if articles in self.plan.sizes else self.small(articles)
            folder = self.work / f"incremental-{articles}"
            shutil.rmtree(folder, ignore_errors=True)
            # Hard links: an update writes a new version folder and never changes a file in place.
            shutil.copytree(base.index, folder / "index", copy_function=os.link)
            shutil.copytree(base.corpus, folder / "corpus", copy_function=os.link)
            runs = []
            for rep in range(self.plan.reps):
                name, content = f"added_{rep:03d}.md", self.generator.article(10**7 + articles * 10 + rep)
                (folder / "corpus" / name).write_text(content, encoding="utf-8")
                before = store.load(folder / "index", self.model.name)
                kept_ids = before.ids.copy()
                del before
                # The new article is embedded by the real model, not read from the cache.
                self.embedder.cache, cache = None, self.embedder.cache
                self.embedder.reset_counts()
                try:
                    with _stage_timers() as stages:
                        began = time.perf_counter()
                        report = indexer.update_index(
                            folder / "corpus",
                            folder / "index",
                            self.embedder,
                            self.settings.chunk_tokens,
                            self.settings.chunk_overlap,
                            self.settings.exact_search_limit,
                        )
                        seconds = time.perf_counter() - began
                finally:
                    self.embedder.cache = cache
                after = store.load(folder / "index", self.model.name)
                new_rows = [i for i, p in enumerate(after.passages) if p.article_id == Path(name).stem]
                # The most an update may embed: the new article's own distinct passage and sentence texts.
                new_texts = {
                    t for i in new_rows for t in [after.passages[i].text, *after.passages[i].sentence_texts()]
                }
                runs.append(
                    {
                        "seconds": seconds,
                        "model_seconds": self.embedder.model_seconds,
                        "texts_embedded": report.embedded,
                        "new_passages": len(new_rows),
                        "new_texts": len(new_texts),
                        "kept_faiss_ids_unchanged": bool(
                            np.array_equal(after.ids[: len(kept_ids)], kept_ids)
                        ),
                        "stages": {**stages.seconds(), "embed (real model)": self.embedder.model_seconds},
                    }
                )
            full = sizes.get(base.name) or self.estimate(base.build)
            real = self.results.get("build", {}).get("real", {})
            if articles == self.plan.build_articles and real.get("build_seconds", {}).get("n"):
                # The same corpus was built with the real model in this run: use the measured time.
                full = {**full, "full_build_seconds_measured": real["build_seconds"]["median"]}
            full_seconds = full.get("full_build_seconds_measured") or full.get("full_build_seconds_estimated")
            median = measure.median([r["seconds"] for r in runs])
            out[str(articles)] = {
                "articles": articles,
                "passages": base.build.get("passages"),
                "update": summary([r["seconds"] for r in runs]),
                "runs": runs,
                "full_build_pipeline_seconds": full.get("pipeline_seconds"),
                "full_build_seconds_estimated": full.get("full_build_seconds_estimated"),
                "full_build_seconds_measured": full.get("full_build_seconds_measured"),
                "share_of_full_build": median / full_seconds if full_seconds else None,
                "share_of_full_pipeline": median / full["pipeline_seconds"]
                if full.get("pipeline_seconds")
                else None,
                "base_index_reused_from_earlier_run": bool(base.build.get("reused_from_earlier_run")),
            }
            shutil.rmtree(folder, ignore_errors=True)
        self.results["incremental"] = out

    def small(self, articles: int) -> Prepared:
        """A small synthetic index with real (cached) vectors, for the smallest incremental point."""
        name = f"syn-{articles}"
        if name not in self.prepared:
            folder = self.work / name
            shutil.rmtree(folder, ignore_errors=True)
            prepared = Prepared(name, articles, folder / "corpus", folder / "index")
            write_corpus(prepared.corpus, self.generator, articles)
            prepared.build = self.build(prepared, derive=False)
            self.prepared[name] = prepared
        return self.prepared[name]

    def memory(self) -> None:
        """Peak RSS of a `chat` process answering a few questions, at every size."""
        targets = [self.shipped()] + [self.synthetic(n) for n in self.plan.sizes]
        out = {}
        for prepared in targets:
            questions = self.questions(prepared.name != "shipped")[: self.plan.memory_questions]
            argv = [
                str(measure.VENV_BIN / "protest-bot"),
                *("--corpus", str(prepared.corpus), "--index", str(prepared.index)),
                "chat",
            ]
            run = run_process(argv, stdin="\n".join(questions) + "\nexit\n", memory=True)
            if run.returncode != 0:
                self.note(f"chat on {prepared.name} failed: {run.stderr.strip()[-300:]}")
            out[prepared.name] = {
                "passages": prepared.build.get("passages"),
                "sentences": prepared.build.get("sentences"),
                "peak_rss_mb": run.peak_rss_mb,
                "seconds": run.seconds,
                "index_bytes": prepared.build.get("index_bytes"),
            }
        # The floor: a process that loads the model and embeds one question, nothing else.
        from bot.embed import resolve_model

        program = FLOOR_PROGRAM.replace(")\n", ").encode(['How many employees signed?'])\n")
        floor = run_process(
            [sys.executable, "-c", program, resolve_model(self.settings.model)],
            env={"HF_HUB_OFFLINE": "1"},
            memory=True,
        )
        self.results["memory"] = {"model_only_process_rss_mb": floor.peak_rss_mb, "sizes": out}

    def ann(self) -> None:
        """recall@10 of float16 exact and IVF search against float32 exact, with real question vectors."""
        import faiss

        from bot import store
        from bot.dense import new_dense_index
        from bot.dense import one_thread as one_thread_search

        queries = self.question_vectors()
        out: dict[str, Any] = {}
        for articles in self.plan.sizes:
            prepared = self.synthetic(articles)
            index = store.load(prepared.index, self.model.name)
            texts = [index.passages[i].text for i in range(len(index.passages))]
            self.embedder.derive = articles >= self.plan.derive_from
            if self.embedder.derive:
                self.recipes(articles)
            self.embedder.reset_counts()
            vectors = self.embedder.encode(texts)
            counts = dict(self.embedder.counts)
            self.embedder.derive = False
            exact = faiss.IndexFlatIP(vectors.shape[1])
            exact.add(vectors)
            truth = exact.search(queries, 10)[1]
            entry: dict[str, Any] = {"passages": len(texts), "vectors": counts, "queries": len(queries)}
            candidates = {
                "float32 exact": exact,
                "float16 exact": new_dense_index(vectors, exact_limit=len(vectors)),
                "ivf (float16)": new_dense_index(vectors, exact_limit=0),
            }
            for label, dense in candidates.items():
                found = _search_ids(dense, queries)
                recall = float(
                    np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
                )
                # What hybrid search does: ask for 50, then score those candidates exactly.
                wide = _search_ids(dense, queries, 50)
                reranked = [_rescored(w[w >= 0], vectors, q) for w, q in zip(wide, queries, strict=True)]
                recall_50 = float(
                    np.mean([len(set(f) & set(t)) / 10 for f, t in zip(reranked, truth, strict=True)])
                )
                latencies = []
                for query in queries[:100]:
                    with one_thread_search():
                        began = time.perf_counter()
                        dense.search(query[None, :], 50)
                        latencies.append(time.perf_counter() - began)
                entry[label] = {
                    "recall_at_10": recall,
                    "recall_at_10_of_50_rescored": recall_50,
                    "search_ms": summary([x * 1000 for x in latencies]),
                }
                if label == "ivf (float16)":
                    entry[label]["lists"], entry[label]["probes"] = dense.nlist, dense.nprobe
            entry["vector_bytes"] = {"float32": vectors.nbytes, "float16": vectors.nbytes // 2}
            out[prepared.name] = entry
        real = [self.prepared[f"syn-{n}"] for n in self.plan.sizes if n < self.plan.derive_from]
        if real and any(n >= self.plan.derive_from for n in self.plan.sizes):
            index = store.load(real[0].index, self.model.name)
            texts = [index.passages[i].text for i in range(len(index.passages))]
            out["derived_vs_real_cosine"] = fidelity(self.embedder, texts)
        self.results["ann"] = out

    def question_vectors(self) -> np.ndarray:
        questions = [q for q in self.questions(True)]
        questions += squad_questions(self.plan.ann_queries, offset=1000)
        questions = list(dict.fromkeys(questions))[: self.plan.ann_queries]
        vectors = self.embedder.encode(questions)
        self.cache.save()
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def note(self, text: str) -> None:
        log.warning(text)
        self.results["notes"].append(text)

    def finish(self) -> dict[str, Any]:
        self.results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.results["machine"]["load_average_at_end"] = measure.load_average()
        self.results["vector_cache_entries"] = len(self.cache)
        return self.results

    def cleanup(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)


def _search_ids(dense: Any, queries: np.ndarray, k: int = 10) -> np.ndarray:
    from bot.dense import one_thread as one_thread_search

    with one_thread_search():
        return dense.search(queries, k)[1]


def _rescored(rows: np.ndarray, vectors: np.ndarray, query: np.ndarray, k: int = 10) -> np.ndarray:
    return rows[np.argsort(-(vectors[rows] @ query))][:k]


def _use_ivf(index: Any) -> None:
    """Replace a loaded index's exact search with IVF over the same stored vectors (in memory only)."""
    from bot.dense import dense_settings, new_dense_index

    settings = dense_settings(len(index.passages), exact_limit=0)
    index.dense = new_dense_index(index.passage_vectors(), 0, index.ids, settings)
    index.manifest.dense, index.manifest.search = settings, settings.kind


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(url: str, server: subprocess.Popen[bytes], timeout: float) -> bool:
    """Poll /healthz until it is 200 (True), the server exits or the time is up (False)."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    return False


def _timed(function: Callable[[], Any]) -> float:
    began = time.perf_counter()
    function()
    return time.perf_counter() - began


def squad_questions(count: int, offset: int = 0) -> list[str]:
    """A fixed sample of SQuAD questions (their articles are the synthetic corpora's raw material)."""
    lines = SQUAD_QUESTIONS.read_text(encoding="utf-8").splitlines()
    rng = random.Random(5 + offset)
    return [json.loads(line)["question"] for line in rng.sample(lines, count)]


class _TimedModel:
    """The real embedder, timing its encode calls and counting the word pieces of the first one."""

    def __init__(self, model: Any, passage_texts: set[str]) -> None:
        self.model = model
        self.name, self.dimension, self.max_tokens = model.name, model.dimension, model.max_tokens
        self.passage_texts = passage_texts
        self.seconds = 0.0
        self.tokens: dict[str, int] = {}

    def count_tokens(self, texts: Any) -> list[int]:
        return self.model.count_tokens(texts)

    def encode(self, texts: Any, progress: bool = False) -> np.ndarray:
        began = time.perf_counter()
        vectors = self.model.encode(texts, progress=progress)
        self.seconds += time.perf_counter() - began
        if not self.tokens:
            # Word pieces the model read (two special tokens a text), for passages and for sentences.
            counts = self.model.count_tokens(texts)
            long = [c + 2 for t, c in zip(texts, counts, strict=True) if t in self.passage_texts]
            short = [c + 2 for t, c in zip(texts, counts, strict=True) if t not in self.passage_texts]
            self.tokens = {
                "total": sum(long) + sum(short),
                "passages": sum(long),
                "passage_texts": len(long),
                "sentences": sum(short),
                "sentence_texts": len(short),
            }
        return vectors

    def take(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds


class _Stages:
    def __init__(self) -> None:
        self.timers: dict[str, Timer] = {}

    def seconds(self) -> dict[str, float]:
        return {name: timer.seconds for name, timer in self.timers.items()}


@contextlib.contextmanager
def _stage_timers() -> Iterator[_Stages]:
    """Time the stages of a build from outside, by wrapping the functions the indexer calls."""
    from bot import indexer, store
    from bot.lexical import LexicalIndex

    stages = _Stages()
    patches = [
        (indexer, "read_corpus", "read"),
        (indexer, "_read", "read"),
        (indexer, "_chunk_all", "chunk"),
        (LexicalIndex, "build", "bm25"),
        (store, "save", "write"),
        (store, "save_update", "write"),
    ]
    originals = []
    for owner, attribute, stage in patches:
        original = getattr(owner, attribute, None)
        if original is None:
            continue
        timer = stages.timers.setdefault(stage, Timer())
        # Restore what was there (for a classmethod, the descriptor itself, not the bound method).
        originals.append((owner, attribute, inspect.getattr_static(owner, attribute)))
        setattr(owner, attribute, timer.wrap(original))
    try:
        yield stages
    finally:
        for owner, attribute, original in originals:
            setattr(owner, attribute, original)


class _EngineTimers:
    """Stage timers around one engine's calls: embed, search (dense + BM25), fuse, read (the reader,
    with the single words it embeds), quote."""

    def __init__(self) -> None:
        self.timers = {k: Timer() for k in ("embed", "search", "hybrid", "read", "quote")}
        self.available: dict[str, bool] = {}

    def reset(self) -> None:
        for timer in self.timers.values():
            timer.take()

    def take(self) -> dict[str, float]:
        seconds = {k: t.take() for k, t in self.timers.items()}
        return {
            "embed": seconds["embed"],
            "search": seconds["search"],
            "fuse": max(seconds["hybrid"] - seconds["search"], 0.0),
            "read": seconds["read"],
            "quote": seconds["quote"],
        }


@contextlib.contextmanager
def _engine_timers(engine: Any) -> Iterator[_EngineTimers]:
    """Wrap, for one engine, the functions `Engine.answer` calls (nothing in bot/ is edited):
    the embedder's encode; the index's dense search and BM25 scoring ("search"); hybrid_search
    as imported by bot.engine (minus search = "fuse"); the reader's read_question, read and
    neighbour_coverage ("read"); choose_quote as imported by bot.engine."""
    import bot.engine

    timers = _EngineTimers()
    undo: list[Callable[[], None]] = []
    embedder = engine.embedder
    engine.embedder = _Proxy(embedder, encode=timers.timers["embed"].wrap(embedder.encode))
    undo.append(lambda: setattr(engine, "embedder", embedder))
    index = engine.index
    index.search_dense = timers.timers["search"].wrap(index.search_dense)
    undo.append(lambda: index.__dict__.pop("search_dense", None))
    lexical = index.lexical
    lexical.scores = timers.timers["search"].wrap(lexical.scores)
    undo.append(lambda: lexical.__dict__.pop("scores", None))
    steps = (
        ("hybrid_search", "hybrid"),
        ("read", "read"),
        ("neighbour_coverage", "read"),
        ("read_question", "read"),
        ("choose_quote", "quote"),
    )
    for attribute, timer in steps:
        original = getattr(bot.engine, attribute, None)
        timers.available[attribute] = original is not None
        if original is not None:
            setattr(bot.engine, attribute, timers.timers[timer].wrap(original))
            undo.append(lambda a=attribute, o=original: setattr(bot.engine, a, o))
    try:
        yield timers
    finally:
        for step in reversed(undo):
            step()


class _Proxy:
    """An object that answers like `target`, with some attributes replaced."""

    def __init__(self, target: Any, **replaced: Any) -> None:
        self._target = target
        self.__dict__.update(replaced)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


def _git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


SECTIONS = ("build", "pipeline", "startup", "cold", "served", "warm", "incremental", "memory", "ann")


def run(plan: Plan, cache_dir: Path, sections: tuple[str, ...] = SECTIONS, fresh: bool = False,
        work_dir: Path | None = None, keep_work: bool = False) -> dict[str, Any]:  # fmt: skip
    """Run the chosen sections in a fixed order and return the results."""
    bench = Bench(plan, cache_dir, work_dir=work_dir, fresh=fresh)
    steps: dict[str, Callable[[], None]] = {
        "build": bench.build_throughput,
        "pipeline": bench.pipeline_curve,
        "startup": bench.startup,
        "cold": bench.cold,
        "served": bench.served,
        "warm": bench.warm,
        "incremental": bench.incremental,
        "memory": bench.memory,
        "ann": bench.ann,
    }
    timings = {}
    try:
        for name in SECTIONS:
            if name in sections:
                log.info("section %s", name)
                began = time.perf_counter()
                steps[name]()
                timings[name] = round(time.perf_counter() - began, 1)
    finally:
        bench.results["section_seconds"] = timings
        if not keep_work:
            bench.cleanup()
    return bench.finish()
