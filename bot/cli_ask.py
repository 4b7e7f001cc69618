"""`ask` (one question, or one a line with --json -) and `chat` (one after another, follow-ups read
with the question before): in-process, or through a server with --server."""

from __future__ import annotations

import functools
import json
import sys
from typing import Annotated

import typer

from bot.cli_common import (
    AnswerTopK,
    ServerOption,
    answer_stdin_lines,
    err,
    handles_errors,
    notify,
    open_engine_here,
    out,
    tolerant_stdin,
)
from bot.cli_server import ask_server, server_chat, server_client, server_unreachable
from bot.errors import BadInputError


@handles_errors
def ask(
    ctx: typer.Context,
    question: Annotated[
        str,
        typer.Argument(
            metavar="QUESTION", help="The question; with --json, '-' reads one question a line from stdin."
        ),
    ],
    k: AnswerTopK = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as one JSON object.")] = False,
    server: ServerOption = None,
) -> None:
    """Answer one question with quoted, cited passages."""
    from bot.render import answer_markup

    k = k or ctx.obj.top_k
    client = server_client(server)
    if client is not None:
        try:
            ask_server(client, question, k, as_json)
            return
        except server_unreachable() as exc:
            notify(f"{exc}: answering here")
        finally:
            client.close()
    from bot.engine import validate_question
    from bot.render import answer_dict

    if as_json and question == "-":
        _ask_stream(ctx, k)
        return
    validate_question(question)  # fail fast, before the model loads
    answer = open_engine_here(ctx.obj).answer(question, k)
    if as_json:
        out.print(json.dumps(answer_dict(answer), ensure_ascii=False), markup=False)
    else:
        out.print(answer_markup(answer))


def _ask_stream(ctx: typer.Context, k: int) -> None:
    """One question a line in, one JSON object a line out; the model is loaded once."""
    from bot.render import answer_dict

    engine = open_engine_here(ctx.obj)
    answer_stdin_lines(lambda line: answer_dict(engine.answer(line, k)))


@handles_errors
def chat(ctx: typer.Context, k: AnswerTopK = None, server: ServerOption = None) -> None:
    """Ask questions one after another (type exit, or press Ctrl-D, to quit)."""
    from bot.render import answer_markup

    k = k or ctx.obj.top_k
    client = server_client(server)
    if client is not None:
        try:
            client.check()
            ask = server_chat(client, k)
        except server_unreachable() as exc:
            notify(f"{exc}: answering here")
            client = None
    if client is None:
        engine = open_engine_here(ctx.obj)
        ask = functools.partial(engine.answer, k=k)
    tolerant_stdin()
    previous = None  # the last answer, so "how many signed it?" is read with the question before
    # Like `python -i` and sqlite3: the banner and the prompt are for a person at a terminal. Piped
    # input gets the answers alone, not each one glued to a "? " on stdout.
    interactive = stdin_is_terminal()
    if interactive:
        out.print(
            "[bold]Ask about the June 2018 Amazon employee protest.[/bold] Type exit or press Ctrl-D to quit."
        )
    while True:
        try:
            question = input("\n? " if interactive else "")
        except EOFError:
            if interactive:
                out.print()  # end the prompt's line
            return
        if question.strip().lower() in {"exit", "quit", ":q"}:
            return
        if not question.strip():
            continue
        try:
            previous = ask(question, previous=previous)
            out.print(answer_markup(previous) if interactive else answer_markup(previous) + "\n")
        except BadInputError as exc:
            err.print(f"error: {exc}", markup=False)


def stdin_is_terminal() -> bool:
    """Whether a person types the questions (tests replace this to drive chat as one)."""
    return sys.stdin.isatty()
