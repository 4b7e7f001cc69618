"""What every command shares: the two consoles, one-line errors at the edge, the engine opened with
progress on stderr, and the options several commands take."""

from __future__ import annotations

import functools
import io
import json
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from bot.errors import BadInputError, ProtestBotError

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.engine import Engine

log = logging.getLogger("bot")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])

TopK = Annotated[
    int, typer.Option("-k", "--top-k", min=1, max=20, metavar="N", help="How many citations at most.")
]
# ask and chat: the setting PROTEST_BOT_TOP_K (3) unless -k says otherwise, as Telegram and serve do.
AnswerTopK = Annotated[
    int | None,
    typer.Option(
        "-k",
        "--top-k",
        min=1,
        max=20,
        metavar="N",
        help="How many citations at most.",
        show_default="PROTEST_BOT_TOP_K, else 3",
    ),
]
# `telegram` and `serve`: where replicas keep what they share.
RedisUrlOption = Annotated[
    str | None,
    typer.Option(
        help="Redis for state shared by replicas (redis://host:6379/0); in memory without it.",
        envvar="PROTEST_BOT_REDIS_URL",
        metavar="URL",
    ),
]
ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="PROTEST_BOT_SERVER",
        metavar="URL",
        help="Ask a running `protest-bot serve` at this URL (no model load); without one, answer here.",
    ),
]


def handles_errors(command: F) -> F:
    """Domain errors → one line on stderr and their exit code; anything else → one line and exit 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ProtestBotError as exc:
            err.print(f"error: {exc}", markup=False)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted", markup=False)
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            log.debug("unexpected error", exc_info=exc)
            err.print(
                f"error: unexpected {type(exc).__name__}: {exc} (run with --verbose for details)",
                markup=False,
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def notify(message: str) -> None:
    """A progress note for the person at the terminal, dim on stderr."""
    err.print(message, style="dim", markup=False)


def open_engine_here(settings: Settings) -> Engine:
    """The engine, its index built or updated first when needed, with progress on stderr."""
    from bot.startup import open_engine

    return open_engine(settings, notify=notify, progress=err.is_terminal)


def answer_stdin_lines(answer_line: Callable[[str], dict[str, Any]]) -> None:
    """`ask --json -`: one question a line in, one JSON object a line out. A refused question is
    one `error: line N:` on stderr and the rest are still answered; then exit 2."""
    failures = 0
    tolerant_stdin()
    for number, line in enumerate(sys.stdin, start=1):
        if not line.strip():
            continue
        try:
            data = answer_line(line)
        except BadInputError as exc:
            err.print(f"error: line {number}: {exc}", markup=False)
            failures += 1
            continue
        out.print(json.dumps(data, ensure_ascii=False), markup=False)
    if failures:
        raise typer.Exit(2)


def tolerant_stdin() -> None:
    """Bytes on stdin that are not UTF-8 reach validate_question (which refuses that one question)
    instead of ending the whole stream with a UnicodeDecodeError."""
    if isinstance(sys.stdin, io.TextIOWrapper):
        sys.stdin.reconfigure(errors="surrogateescape")
