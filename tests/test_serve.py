"""`protest-bot serve` as a real process on a free loopback port, with the real model: the CLI's
`--server` path prints what in-process `ask` and `chat` print without importing torch, and a running
server answers from an article added while it runs, keeping the old index when a new one is broken."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.config import Settings
from tests.conftest import ROOT
from tests.test_api import corrupt_new_version

TOKEN = "serve-test-token-0123456789abcdef"
STARTUP_SECONDS = 180
RELOAD_SECONDS = 60
QUESTIONS = (
    "What does Palantir run on?",
    "How many Google employees signed the letter about Project Maven?",  # two figures: a note
    "What is the best pizza in Naples?",  # declined
)
CHAT = "Who wrote the letter to Jeff Bezos?\nhow many signed it?\nand what did they ask for?\n\nexit\n"
# A follow-up that swaps the subject, then a follow-up of it: the second is read with the swapped
# question ("How many Microsoft employees…"), which only the server knows.
SWAP_CHAT = (
    "How many Google employees signed the letter?\nwhat about Microsoft?\nand when did they sign?\nexit\n"
)

runner = CliRunner()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def copy_of(settings: Settings, target: Path) -> Settings:
    """A private copy of a built corpus and index (a test that adds articles must not share one)."""
    shutil.copytree(settings.corpus, target / "corpus")
    shutil.copytree(settings.index, target / "index")
    return settings.model_copy(update={"corpus": target / "corpus", "index": target / "index"})


@contextlib.contextmanager
def serving(settings: Settings, log: Path) -> Iterator[str]:
    """`protest-bot serve` on a free port until the block ends; yields its URL once /healthz is 200."""
    port = free_port()
    env = {
        **os.environ,
        "PROTEST_BOT_CORPUS": str(settings.corpus),
        "PROTEST_BOT_INDEX": str(settings.index),
        "PROTEST_BOT_API_TOKEN": TOKEN,
        "PROTEST_BOT_RELOAD_SECONDS": "0.5",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    with log.open("w") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--port", str(port)],
            cwd=log.parent,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not healthy(url):
            assert server.poll() is None, f"serve exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"serve never became healthy: {log.read_text()}"
            time.sleep(0.2)
        yield url
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    assert server.returncode == 0, log.read_text()


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def served(
    real_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, str]]:
    root = tmp_path_factory.mktemp("served")
    settings = copy_of(real_settings, root)
    with serving(settings, root / "serve.log") as url:
        yield settings, url


def cli(*args: str, token: str | None = TOKEN, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The real `protest-bot` as a process, talking to a server (no index settings: it needs none)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROTEST_BOT_")}
    if token is not None:
        env["PROTEST_BOT_API_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], cwd=ROOT, env=env, input=stdin, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def in_process(settings: Settings, *args: str, stdin: str | None = None):  # type: ignore[no-untyped-def]
    base = ["--corpus", str(settings.corpus), "--index", str(settings.index), "--model", settings.model]
    return runner.invoke(app, [*base, *args], input=stdin)


@pytest.mark.parametrize("question", QUESTIONS, ids=["answered", "two-figures", "declined"])
def test_ask_through_the_server_prints_what_ask_prints_in_process(
    served: tuple[Settings, str], question: str
) -> None:
    settings, url = served
    for options in ([], ["--json"], ["-k", "1"]):
        remote = cli("ask", "--server", url, *options, question)
        local = in_process(settings, "ask", *options, question)
        assert remote.returncode == local.exit_code == 0, remote.stderr
        assert remote.stdout == local.stdout
        assert remote.stderr == ""
    if question == QUESTIONS[1]:
        assert "Note:" in remote.stdout, "the disagreement note is rendered from the contract"


def test_the_server_path_imports_no_torch(served: tuple[Settings, str]) -> None:
    _, url = served
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "bot", "ask", "--server", url, QUESTIONS[0]],
        cwd=ROOT,
        env={**os.environ, "PROTEST_BOT_API_TOKEN": TOKEN},
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert "Palantir runs on AWS" in result.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "urllib.request" in imported, "the import list was read"
    heavy = {"torch", "sentence_transformers", "transformers", "faiss", "bm25s", "numpy", "httpx"} & imported
    assert heavy == set(), f"imported {heavy} ({elapsed:.2f} s)"


def test_chat_through_the_server_reads_follow_ups_as_in_process(served: tuple[Settings, str]) -> None:
    settings, url = served
    remote = cli("chat", "--server", url, stdin=CHAT)
    local = in_process(settings, "chat", stdin=CHAT)
    assert remote.returncode == local.exit_code == 0, remote.stderr
    assert remote.stdout == local.stdout
    assert remote.stdout.count("” [1]") == 3  # three answers, each opening with its answer line


def test_chat_through_the_server_swaps_a_follow_ups_subject_as_in_process(
    served: tuple[Settings, str],
) -> None:
    settings, url = served
    remote = cli("chat", "--server", url, stdin=SWAP_CHAT)
    local = in_process(settings, "chat", stdin=SWAP_CHAT)
    assert remote.returncode == local.exit_code == 0, remote.stderr
    assert remote.stdout == local.stdout
    # the swapped follow-up and the one after it both open with Microsoft's letter
    assert (
        remote.stdout.count("“More than 300 employees have signed a letter denouncing the campaign.” [1]\n")
        == 2
    )


def test_ask_json_stream_through_the_server(served: tuple[Settings, str]) -> None:
    settings, url = served
    lines = f"{QUESTIONS[0]}\n\n{'x' * 1001}\n{QUESTIONS[2]}\n"
    remote = cli("ask", "--server", url, "--json", "-", stdin=lines)
    local = in_process(settings, "ask", "--json", "-", stdin=lines)
    assert remote.returncode == local.exit_code == 2
    assert [json.loads(line) for line in remote.stdout.splitlines()] == [
        json.loads(line) for line in local.stdout.splitlines()
    ]
    assert (
        remote.stderr.strip()
        == "error: line 3: the question is too long (1001 characters; the limit is 1000)"
    )


def test_bad_questions_through_the_server_are_one_line_and_exit_2(served: tuple[Settings, str]) -> None:
    _, url = served
    for question in ("", "   ", "x" * 5000):
        result = cli("ask", "--server", url, question)
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: the question is")


def test_a_missing_or_wrong_token_is_one_line_and_exit_1(served: tuple[Settings, str]) -> None:
    _, url = served
    for token in (None, "wrong-token-but-long-enough"):
        result = cli("ask", "--server", url, QUESTIONS[0], token=token)
        assert result.returncode == 1 and result.stdout == ""
        assert result.stderr.count("\n") == 1 and "answered 401" in result.stderr, result.stderr
        assert TOKEN not in result.stderr and "Traceback" not in result.stderr


def test_a_bad_server_address_is_one_line_and_exit_2(built: Settings) -> None:
    result = in_process(built, "ask", "--server", "127.0.0.1:8000", QUESTIONS[0])
    assert result.exit_code == 2
    assert (
        result.output.strip()
        == "error: --server must be an http:// or https:// address, not '127.0.0.1:8000'"
    )


def test_no_server_at_the_address_answers_in_process(real_settings: Settings) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there once the socket is closed
    result = in_process(real_settings, "ask", "--server", url, QUESTIONS[0])
    assert result.exit_code == 0, result.output
    assert "Palantir runs on AWS" in result.stdout
    assert f"no server at {url}" in result.stderr and "answering here" in result.stderr
    chat = in_process(real_settings, "chat", "--server", url, stdin="What does Palantir run on?\n")
    assert chat.exit_code == 0 and "Palantir runs on AWS" in chat.stdout


def test_serve_answers_an_article_added_while_it_runs_and_survives_a_broken_index(
    real_settings: Settings, tmp_path: Path
) -> None:
    settings = copy_of(real_settings, tmp_path)
    article = tmp_path / "tubas.txt"
    article.write_text(
        "The zebra crossing festival in Quimper drew four hundred marching tubas on Saturday.\n",
        encoding="utf-8",
    )
    question = {"question": "How many tubas marched at the zebra crossing festival in Quimper?"}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    log = tmp_path / "serve.log"
    with serving(settings, log) as url, httpx.Client(base_url=url, headers=headers, timeout=60) as http:
        assert http.post("/ask", json=question).json()["abstained"]
        added = in_process(settings, "add", str(article), "--title", "Tubas", "--outlet", "Test Gazette")
        assert added.exit_code == 0, added.output
        deadline = time.monotonic() + RELOAD_SECONDS
        while "four hundred marching tubas" not in http.post("/ask", json=question).text:
            assert time.monotonic() < deadline, f"the new article was never answered: {log.read_text()}"
            time.sleep(0.2)
        assert "reloaded the index" in log.read_text()

        damaged = corrupt_new_version(settings.index)
        deadline = time.monotonic() + RELOAD_SECONDS
        while "could not load the new index" not in log.read_text():
            assert time.monotonic() < deadline, "the broken index was never noticed"
            time.sleep(0.2)
        still = http.post("/ask", json=question)
        assert still.status_code == 200 and "four hundred marching tubas" in still.text
        assert http.get("/healthz").status_code == 200
    warnings = [line for line in log.read_text().splitlines() if "could not load the new index" in line]
    assert len(warnings) == 1 and damaged in warnings[0]
    assert "Traceback" not in log.read_text() and TOKEN not in log.read_text()


def test_serve_on_a_port_in_use_is_one_line_and_exit_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("serve", "--port", str(port), token=None)
    assert result.returncode == 1, result.stderr  # not uvicorn's 3, which here means a damaged index
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: cannot listen for the HTTP API on 127.0.0.1:{port}: Address already in use"]
    assert "Traceback" not in result.stderr and "model" not in result.stderr.lower()
