"""Load test of the Telegram bot against the fake Bot API on 127.0.0.1: a measurement, not a test.

`protest-bot telegram` runs as a process of its own (so its memory is measured alone), long-polling
the fake Bot API of tests/fake_bot_api.py, which runs in this process. N users each ask M questions
one after another in their private chats (closed loop: the next question once the answer is in), and
the script reports:

- answers per second and latency percentiles (question pushed → the answer's last message sent);
- lost answers (none within the timeout) and duplicated ones (more than one per question), and the
  requests the fake Bot API refused as Telegram would: all three must be 0;
- the bot process's memory (RSS) over the run: after start-up, after warm-up, peak, at the end, and
  the trend after warm-up, which must be flat;
- with --faults, Bot API failures injected all along: 429 with retry_after, 502, dropped connections.

The bot's per-user and global question limits are lifted for the run (they would refuse most of
the load by design); PTB's flood limiter, which keeps the bot under Telegram's 30 requests/s, stays.

    python benchmarks/load_telegram.py --users 20 --questions 40 --faults
    python benchmarks/load_telegram.py --model fake --users 5 --questions 10    # a quick smoke run

Exit code 0 when nothing was lost, duplicated or refused and the bot stayed up; 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fake_bot_api import TOKEN, Call, FakeBotApi  # noqa: E402

QUESTION_FILES = (ROOT.parent / "shared" / "eval" / "dev-questions.jsonl",)
FALLBACK_QUESTIONS = (
    "What does Palantir run on?",
    "Who wrote to Jeff Bezos?",
    "How many employees signed the letter?",
    "Why did the workers mention IBM?",
    "What did the ACLU test find?",
    "What is the best pizza in Naples?",  # an abstention now and then
)
FIRST_USER_ID = 700_000


# --- the bot under load -------------------------------------------------------------------------


def bot_command(model: str, corpus: Path, index: Path) -> list[str]:
    """`protest-bot telegram` with the real model, or the same CLI with the fake embedder."""
    if model == "fake":
        runner = str(ROOT / "tests" / "crash_runner.py")
        return [sys.executable, runner, "--corpus", str(corpus), "--index", str(index),
                "--model", "test-hash-embedder", "telegram"]  # fmt: skip
    return [sys.executable, "-m", "bot", "--corpus", str(corpus), "--index", str(index), "--model", model,
            "telegram"]  # fmt: skip


def bot_environment(api: FakeBotApi) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "PROTEST_BOT_"))}
    env.update(
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_API_BASE_URL=api.base_url,
        TELEGRAM_RATE_LIMIT_PER_MINUTE="1000000",
        TELEGRAM_RATE_LIMIT_GLOBAL_PER_MINUTE="1000000",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    return env


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class MemorySampler(threading.Thread):
    """RSS of a process and the answers given so far, sampled every `interval` seconds until stopped."""

    def __init__(self, pid: int, answers: list[int], interval: float = 1.0) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pid, self.answers, self.interval = pid, answers, interval
        self.samples: list[tuple[float, int, int]] = []  # (time, RSS KiB, answers so far)
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            value = rss_kib(self.pid)
            if value is not None:
                self.samples.append((time.monotonic(), value, len(self.answers)))
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)


class FaultInjector(threading.Thread):
    """Every `interval` seconds, script the next Bot API failure: 429, 502 or a dropped connection."""

    KINDS = (
        ("sendMessage", {"status": 429, "retry_after": 1}),
        ("sendMessage", {"status": 502}),
        ("getUpdates", {"drop": True}),
        ("sendChatAction", {"status": 502}),
        ("getUpdates", {"status": 429, "retry_after": 1}),
        ("sendMessage", {"drop": True}),
    )

    def __init__(self, api: FakeBotApi, interval: float) -> None:
        super().__init__(name="fault-injector", daemon=True)
        self.api, self.interval = api, interval
        self.injected: dict[str, int] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        n = 0
        while not self._stop_event.wait(self.interval):
            method, failure = self.KINDS[n % len(self.KINDS)]
            self.api.fail_next(method, **failure)
            label = f"{method} {failure.get('status', 'dropped')}"
            self.injected[label] = self.injected.get(label, 0) + 1
            n += 1

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)


# --- users --------------------------------------------------------------------------------------


def is_final(call: Call) -> bool:
    """The last message of an answer: it carries the 👍/👎 buttons, or it is the abstention."""
    if not call.ok or call.method.lower() != "sendmessage":
        return False
    rows = (call.params.get("reply_markup") or {}).get("inline_keyboard") or []
    voted = any(str(b.get("callback_data", "")).startswith("v:") for row in rows for b in row)
    return voted or "don't cover" in str(call.result.get("text", ""))


@dataclass
class UserResult:
    chat_id: int
    asked: int = 0
    latencies: list[float] = field(default_factory=list)
    lost: int = 0


def user(
    api: FakeBotApi, n: int, questions: list[str], count: int, timeout: float, answers: list[int]
) -> UserResult:
    """One user: ask `count` questions, each after the previous answer arrived."""
    chat_id = FIRST_USER_ID + n
    person = {"id": chat_id, "is_bot": False, "first_name": f"Load {n}"}
    chat = {"id": chat_id, "type": "private", "first_name": person["first_name"]}
    result = UserResult(chat_id)
    for i in range(count):
        question = questions[(n * count + i) % len(questions)]
        mark = api.mark()
        sent = time.monotonic()
        api.send_text(question, chat=chat, user=person)
        result.asked += 1
        try:
            (final,) = api.wait_for(
                "sendMessage", lambda c: c.chat_id == chat_id and is_final(c), timeout=timeout, since=mark
            )
        except TimeoutError:
            result.lost += 1
            continue
        result.latencies.append(final.at - sent)
        answers.append(1)  # list.append is atomic: a counter the sampler reads
    return result


# --- the run ------------------------------------------------------------------------------------


def load_questions() -> list[str]:
    questions: list[str] = []
    for path in QUESTION_FILES:
        if path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            questions += [json.loads(line)["question"] for line in lines if line.strip()]
    return questions + list(FALLBACK_QUESTIONS)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))] if ordered else float("nan")


def trend_mib_per_minute(samples: list[tuple[float, int, int]]) -> float:
    """Least-squares slope of RSS over time, in MiB per minute."""
    if len(samples) < 3:
        return 0.0
    times = [t for t, _, _ in samples]
    values = [v / 1024 for _, v, _ in samples]
    mean_t, mean_v = statistics.fmean(times), statistics.fmean(values)
    spread = sum((t - mean_t) ** 2 for t in times)
    slope = sum((t - mean_t) * (v - mean_v) for t, v in zip(times, values, strict=True)) / spread
    return slope * 60


# The bot remembers the last 2048 answers (for their buttons) and the last answer of 10,000 chats (for
# follow-ups): memory may grow until the answer store is full, and must be flat after that.
ANSWER_STORE = 2048


def memory_report(samples: list[tuple[float, int, int]]) -> dict[str, Any]:
    """RSS at points of the run (by answers given), and its trend after warm-up and after the store filled."""
    if not samples:
        return {}
    warm = samples[len(samples) // 5 :]  # after warm-up: allocator pools, caches, rate-limit buckets
    full = [s for s in samples if s[2] >= ANSWER_STORE]
    by_answers = {}
    for share in (0.25, 0.5, 0.75, 1.0):
        target = samples[-1][2] * share
        _, rss, done = next(s for s in samples if s[2] >= target)
        by_answers[f"after {done} answers"] = round(rss / 1024, 1)
    return {
        "start": round(samples[0][1] / 1024, 1),
        **by_answers,
        "peak": round(max(v for _, v, _ in samples) / 1024, 1),
        "trend_after_warm_up_mib_per_min": round(trend_mib_per_minute(warm), 2),
        "trend_once_the_answer_store_is_full_mib_per_min": round(trend_mib_per_minute(full), 2)
        if len(full) >= 10
        else None,
        "samples": len(samples),
    }


def machine() -> dict[str, Any]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    memory = next(
        int(line.split()[1]) // 1024 for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )  # fmt: skip
    return {"cpus": os.cpu_count(), "cpu": cpu, "memory_mib": memory, "python": platform.python_version()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    # The bot cancels its "typing…" request when the answer is ready; the fake server would print a
    # traceback for each request cut short that way.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    questions = load_questions()
    report: dict[str, Any] = {"machine": machine(), "load_average_before": os.getloadavg()}
    report["settings"] = {
        "users": args.users, "questions_per_user": args.questions, "model": args.model,
        "faults": args.faults, "fault_interval_s": args.fault_interval,
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="protest-bot-load-") as tmp, FakeBotApi() as api:
        corpus = Path(tmp) / "corpus"
        shutil.copytree(ROOT / "corpus", corpus)
        log_path = Path(tmp) / "bot.log"
        with log_path.open("wb") as log:
            started = time.monotonic()
            bot = subprocess.Popen(
                bot_command(args.model, corpus, Path(tmp) / "index"),
                cwd=tmp, env=bot_environment(api), stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            answers: list[int] = []
            sampler = MemorySampler(bot.pid, answers)
            faults = FaultInjector(api, args.fault_interval) if args.faults else None
            try:
                api.wait_for("setMyCommands", timeout=900)
                report["start_up_s"] = round(time.monotonic() - started, 1)
                report["rss_after_start_up_mib"] = round((rss_kib(bot.pid) or 0) / 1024, 1)
                cpu_before = cpu_seconds(bot.pid)
                sampler.start()
                if faults:
                    faults.start()
                results: list[UserResult] = []
                lock = threading.Lock()

                def one(n: int) -> None:
                    outcome = user(api, n, questions, args.questions, args.timeout, answers)
                    with lock:
                        results.append(outcome)

                began = time.monotonic()
                threads = [threading.Thread(target=one, args=(n,), daemon=True) for n in range(args.users)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                elapsed = time.monotonic() - began
                if faults:
                    faults.stop()
                time.sleep(3)  # a duplicate, or an answer later than the timeout, would arrive by now
                sampler.stop()
                alive = bot.poll() is None
                cpu_used = cpu_seconds(bot.pid) - cpu_before if alive else float("nan")
            finally:
                if faults and faults.is_alive():
                    faults.stop()
                bot.send_signal(signal.SIGINT)
                try:
                    bot.wait(60)
                except subprocess.TimeoutExpired:
                    bot.kill()
                    bot.wait()
        output = log_path.read_text(encoding="utf-8", errors="replace")

        finals: dict[int, int] = {}
        for call in api.calls("sendMessage"):
            if call.chat_id is not None and is_final(call):
                finals[call.chat_id] = finals.get(call.chat_id, 0) + 1
        asked = sum(r.asked for r in results)
        answered = sum(len(r.latencies) for r in results)
        lost = sum(r.lost for r in results)
        duplicated = sum(max(0, finals.get(r.chat_id, 0) - len(r.latencies) - r.lost) for r in results)
        late = sum(max(0, min(finals.get(r.chat_id, 0) - len(r.latencies), r.lost)) for r in results)
        latencies = [x for r in results for x in r.latencies]
        samples = sampler.samples
        report.update(
            questions=asked,
            answered=answered,
            lost=lost - late,
            late_beyond_timeout=late,
            duplicated=duplicated,
            refused_by_the_fake_telegram=len(api.rejected()),
            injected_faults=faults.injected if faults else {},
            bot_stayed_up=alive,
            bot_exit_code=bot.returncode,
            token_in_output=TOKEN in output or TOKEN.split(":", 1)[1] in output,
            tracebacks_in_output=output.count("Traceback"),
            duration_s=round(elapsed, 1),
            answers_per_s=round(answered / elapsed, 2),
            bot_cpu_s_per_answer=round(cpu_used / max(answered, 1), 4),
            latency_ms={
                f"p{int(p * 100)}": round(percentile(latencies, p) * 1000, 1) for p in (0.5, 0.9, 0.95, 0.99)
            }
            | {"max": round(max(latencies, default=float("nan")) * 1000, 1)},
            rss_mib=memory_report(samples),
            load_average_after=os.getloadavg(),
        )
    return report


def healthy(report: dict[str, Any]) -> bool:
    return (
        report["lost"] == 0
        and report["late_beyond_timeout"] == 0
        and report["duplicated"] == 0
        and report["refused_by_the_fake_telegram"] == 0
        and report["bot_stayed_up"]
        and not report["token_in_output"]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20, help="users asking at the same time (N)")
    parser.add_argument("--questions", type=int, default=40, help="questions per user, one after another (M)")
    parser.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2", help="model, or 'fake'")
    parser.add_argument("--faults", action="store_true", help="inject 429, 502 and dropped connections")
    parser.add_argument("--fault-interval", type=float, default=2.0, help="seconds between injected faults")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds until an answer counts as lost")
    parser.add_argument("--json", type=Path, help="also write the report to this file")
    args = parser.parse_args(argv)
    report = run(args)
    text = json.dumps(report, indent=1, default=str)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    ok = healthy(report)
    verdict = "OK: nothing lost, duplicated or refused" if ok else "FAILED: see the report above"
    print(verdict, file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
