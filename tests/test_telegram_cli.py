"""`protest-bot telegram`: start-up errors are one line without the token, and the real command, run as a
process against the fake Bot API, answers with cited HTML that Telegram accepts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.config import Settings
from tests.conftest import ROOT
from tests.crash_runner import command
from tests.fake_bot_api import PRIVATE, TOKEN, FakeBotApi

runner = CliRunner()
OTHER_TOKEN = "987654321:AAFanother-token_that-the-server-rejects"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No TELEGRAM_* from the developer's shell or a .env in the working folder."""
    for name in list(os.environ):
        if name.startswith("TELEGRAM_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def api() -> Iterator[FakeBotApi]:
    with FakeBotApi() as server:
        yield server


def invoke(settings: Settings, env: dict[str, str], *args: str):  # type: ignore[no-untyped-def]
    base = ["--corpus", str(settings.corpus), "--index", str(settings.index), "--model", settings.model]
    return runner.invoke(app, [*base, "telegram", *args], env=env)


def one_line_error(result, *secrets: str) -> str:  # type: ignore[no-untyped-def]
    """The error line, after checking there is exactly one, with no traceback and no secret in any output."""
    output = result.output  # stdout and stderr, as the user sees them
    for secret in secrets:
        assert secret not in output
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    return errors[0]


def test_missing_token_is_one_line_and_exit_2(built: Settings) -> None:
    result = invoke(built, {})
    assert result.exit_code == 2
    assert "TELEGRAM_BOT_TOKEN is not set" in one_line_error(result)


@pytest.mark.parametrize(
    "token", ["31337", "31337:short", "not-a-token:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", " : "]
)
def test_malformed_token_is_one_line_and_never_echoed(built: Settings, token: str) -> None:
    result = invoke(built, {"TELEGRAM_BOT_TOKEN": token})
    assert result.exit_code == 2
    line = one_line_error(result, *([token] if token.strip(" :") else []))
    assert "malformed" in line or "not set" in line


def test_token_from_dot_env(built: Settings, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TELEGRAM_BOT_TOKEN=31337:short\n", encoding="utf-8")
    result = invoke(built, {})
    assert result.exit_code == 2 and "malformed" in one_line_error(result, "31337:short")


def test_token_the_server_rejects_is_one_line_without_it(built: Settings, api: FakeBotApi) -> None:
    result = invoke(built, {"TELEGRAM_BOT_TOKEN": OTHER_TOKEN, "TELEGRAM_API_BASE_URL": api.base_url})
    assert result.exit_code == 1
    line = one_line_error(result, OTHER_TOKEN)
    assert "rejected TELEGRAM_BOT_TOKEN" in line and api.base_url in line
    assert [c.status for c in api.calls("getMe")] == [401]


def test_unreachable_server_is_one_line_after_retries(built: Settings) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket is closed
    base = f"http://127.0.0.1:{port}/bot"
    result = invoke(built, {"TELEGRAM_BOT_TOKEN": TOKEN}, "--api-base-url", base)
    assert result.exit_code == 1
    assert f"cannot reach the Bot API at {base}" in one_line_error(result, TOKEN)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "verbose"])
def test_unreachable_server_at_start_logs_one_line_per_problem_and_a_traceback_only_if_verbose(
    built: Settings, verbose: bool
) -> None:
    # A process of its own: what a user sees is the log on stderr, not only the final error line.
    base = f"http://127.0.0.1:{_closed_port()}/bot"
    args = [*(["--verbose"] if verbose else []), "telegram", "--api-base-url", base]
    argv = command(built.corpus, built.index, *args)  # the group's options, then these
    env = {**os.environ, "TELEGRAM_BOT_TOKEN": TOKEN}
    result = subprocess.run(
        argv, capture_output=True, text=True, env=env, cwd=built.corpus.parent, timeout=120
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert (
        lines[-1]
        == f"error: cannot reach the Bot API at {base}: httpx.ConnectError: All connection attempts failed"
    )
    assert TOKEN not in result.stderr and TOKEN.split(":")[1] not in result.stderr
    if verbose:
        assert "Traceback" in result.stderr
    else:
        assert "Traceback" not in result.stderr
        assert all(line.split(" ", 1)[0] in {"INFO", "WARNING", "ERROR", "error:"} for line in lines), lines


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"TELEGRAM_WEBHOOK_URL": "http://bot.example.org/hook"}, "must be a public https URL"),
        (
            {"TELEGRAM_WEBHOOK_URL": "https://bot.example.org/hook", "TELEGRAM_WEBHOOK_SECRET": "has spaces"},
            "TELEGRAM_WEBHOOK_SECRET must be",
        ),
        ({"TELEGRAM_API_BASE_URL": "ftp://127.0.0.1/bot"}, "TELEGRAM_API_BASE_URL must be an http(s) URL"),
        ({"TELEGRAM_ADMIN_IDS": "1,two"}, "invalid Telegram setting TELEGRAM_ADMIN_IDS"),
        ({"PROTEST_BOT_REDIS_URL": "http://cache:6379"}, "must be a redis://, rediss:// or unix:// URL"),
        (
            {
                "TELEGRAM_WEBHOOK_URL": "https://bot.example.org/hook",
                "PROTEST_BOT_REDIS_URL": "redis://127.0.0.1:1",
            },
            "TELEGRAM_WEBHOOK_SECRET must be set when replicas share state",
        ),
    ],
)
def test_bad_settings_are_one_line(built: Settings, env: dict[str, str], expected: str) -> None:
    result = invoke(built, {"TELEGRAM_BOT_TOKEN": TOKEN, **env})
    assert result.exit_code == 2
    assert expected in one_line_error(result, TOKEN)


def test_a_webhook_port_in_use_is_one_line_and_exit_1(built: Settings) -> None:
    env = {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE_URL": f"http://127.0.0.1:{_closed_port()}/bot"}
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        options = ["--webhook-url", "http://127.0.0.1:9/telegram", "--webhook-listen", "127.0.0.1"]
        result = invoke(built, env, *options, "--webhook-port", port)
    assert result.exit_code == 1
    assert f"cannot listen for the webhook on 127.0.0.1:{port}" in one_line_error(result, TOKEN)


def test_the_cli_does_not_import_telegram_until_the_command_runs() -> None:
    code = "import sys, bot.cli; sys.exit(int('telegram' in sys.modules or 'torch' in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=60).returncode == 0


def test_the_command_answers_a_conforming_server(real_settings: Settings, api: FakeBotApi) -> None:
    """The issue's acceptance run: the real command, as a process, polling the fake Bot API."""
    env = {
        **os.environ,
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_BASE_URL": api.base_url,
        "PROTEST_BOT_CORPUS": str(real_settings.corpus),
        "PROTEST_BOT_INDEX": str(real_settings.index),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    bot = subprocess.Popen(
        [sys.executable, "-m", "bot", "telegram"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        api.wait_for("setMyCommands", timeout=120)
        mark = api.mark()
        api.send_text("What does Palantir run on?")
        (reply,) = api.wait_for("sendMessage", lambda c: c.chat_id == PRIVATE["id"], since=mark)
        api.send_sticker()
        api.wait_for("sendMessage", lambda c: c.chat_id == PRIVATE["id"], since=mark, count=2)
    finally:
        bot.send_signal(signal.SIGINT)
        out, err = bot.communicate(timeout=60)
    assert bot.returncode == 0, err
    assert reply.ok and reply.params["parse_mode"] == "HTML"
    assert "Palantir runs on AWS" in " ".join(reply.result["text"].split())
    assert any(e["type"] == "blockquote" for e in reply.result.get("entities", []))
    assert TOKEN not in out + err
    assert "Traceback" not in err
    assert "is ready" in err, "the start-up is logged"
    assert api.allowed_updates == ["message", "inline_query", "callback_query"]
    assert api.rejected() == []
