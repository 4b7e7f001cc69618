"""The command line: a thin layer over the engine. Every command reads input, calls the engine,
renders, prints. Errors become one line on stderr and a non-zero exit code, never a traceback.

This module wires: the app, the settings every command shares, and the commands, in the order help
lists them. The commands live in modules named for what they do (`cli_ask`, `cli_index`,
`cli_serve`, `cli_eval`; `cli_server` is ask/chat's --server path, `cli_common` what all share)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from bot import cli_ask, cli_eval, cli_index, cli_serve
from bot.cli_common import err
from bot.cli_usage import OneLineUsageErrors, PlainHelp

# Plain help (no boxes, no <type> placeholders: every value names its metavar) and one-line usage errors.
app = typer.Typer(
    cls=OneLineUsageErrors,
    rich_markup_mode=None,
    help="Answers questions about the June 2018 Amazon employee protest with quoted, cited news passages.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
index_app = typer.Typer(
    help="Build, update and inspect the index.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(index_app, name="index")


@app.callback()
def configure(
    ctx: typer.Context,
    corpus: Annotated[
        Path | None,
        typer.Option(
            help="Folder of article files.",
            metavar="DIR",
            envvar="PROTEST_BOT_CORPUS",
            show_default="corpus",
            readable=False,  # checked by the command, in one line
        ),
    ] = None,
    index: Annotated[
        Path | None,
        typer.Option(
            help="Folder of the built index.",
            metavar="DIR",
            envvar="PROTEST_BOT_INDEX",
            show_default="index",
            readable=False,  # checked by the command, in one line
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Embedding model: a sentence-transformers name or a local folder.",
            metavar="NAME_OR_PATH",
            envvar="PROTEST_BOT_MODEL",
            show_default="all-MiniLM-L6-v2",
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log what happens, with tracebacks.")
    ] = False,
) -> None:
    """Settings from options, environment (PROTEST_BOT_*) and .env, in that order of precedence."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    _quiet_libraries(verbose)
    from bot.config import load_settings  # here, not at the top: `--help` needs no pydantic (0.1 s)
    from bot.errors import BadInputError

    try:
        ctx.obj = load_settings(message="invalid setting: {msg}", corpus=corpus, index=index, model=model)
    except BadInputError as exc:
        # Not through handles_errors: a callback's error must end the run before any command starts.
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(exc.exit_code) from None


def _quiet_libraries(verbose: bool) -> None:
    # httpx logs every request URL at INFO, and Telegram URLs carry the bot token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if not verbose:
        for name in ("sentence_transformers", "transformers", "faiss", "bm25s", "trafilatura", "htmldate"):
            logging.getLogger(name).setLevel(logging.ERROR)


app.command(cls=PlainHelp)(cli_ask.ask)
app.command(cls=PlainHelp)(cli_ask.chat)
app.command(cls=PlainHelp)(cli_index.add)
index_app.command("build", cls=PlainHelp)(cli_index.index_build)
index_app.command("update", cls=PlainHelp)(cli_index.index_update)
index_app.command("status", cls=PlainHelp)(cli_index.index_status)
app.command(cls=PlainHelp)(cli_index.sources)
app.command(cls=PlainHelp)(cli_serve.telegram)
app.command(cls=PlainHelp)(cli_serve.serve)
app.command("eval", cls=PlainHelp)(cli_eval.evaluate_command)


def main() -> None:
    """Console-script entry point."""
    app()
