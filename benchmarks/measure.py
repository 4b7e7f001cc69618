"""Timing, statistics, peak memory of child processes, and a description of the machine."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def summary(samples: Sequence[float]) -> dict[str, Any]:
    """Median and spread of repeated measurements (p25–p75 and min–max), plus p95/p99 and the count."""
    if not samples:
        return {"n": 0}
    values = np.asarray(samples, dtype=float)
    p = np.percentile(values, [25, 50, 75, 95, 99])
    return {
        "n": len(values),
        "median": float(p[1]),
        "p25": float(p[0]),
        "p75": float(p[2]),
        "p95": float(p[3]),
        "p99": float(p[4]),
        "min": float(values.min()),
        "max": float(values.max()),
    }


def ratio(measured: dict[str, Any], floor: dict[str, Any], key: str = "median") -> float | None:
    if not measured.get("n") or not floor.get("n") or not floor["median"]:
        return None
    return float(measured[key] / floor["median"])


class Timer:
    """Accumulates the wall time of a wrapped callable (used to split a question into stages)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0

    def wrap(self, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - began
                self.calls += 1

        return timed

    def take(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds


@dataclass
class Run:
    """A finished child process: wall time, peak resident memory, exit code and output."""

    seconds: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str


def run_process(
    argv: Sequence[str],
    stdin: str = "",
    env: dict[str, str] | None = None,
    cwd: Path = ROOT,
    memory: bool = False,
) -> Run:
    """Run a command to completion. With `memory`, its peak RSS (from the kernel, through the small
    `peak_rss.py` launcher: see there why) is measured too; otherwise `peak_rss_mb` is 0."""
    import tempfile

    report = None
    if memory:
        handle, report = tempfile.mkstemp(prefix="peak-rss-")
        os.close(handle)
        argv = [sys.executable, str(Path(__file__).with_name("peak_rss.py")), report, *argv]
    began = time.perf_counter()
    process = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        text=True,
    )
    out, err = process.communicate(stdin)
    seconds = time.perf_counter() - began
    peak = 0.0
    if report is not None:
        text = Path(report).read_text().strip()
        Path(report).unlink()
        peak = int(text) / 1024 if text else 0.0
    return Run(seconds, peak, process.returncode, out, err)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    versions = {}
    for package in ("torch", "sentence_transformers", "faiss", "bm25s", "numpy"):
        try:
            module = __import__(package)
            versions[package] = getattr(module, "__version__", "?")
        except ImportError:
            versions[package] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": memory_gb,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "versions": versions,
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
