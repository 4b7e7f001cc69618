"""`ask` and `chat` with --server: the same output through a running `protest-bot serve`, whose model
is already loaded. Unreachable servers raise `ServerUnreachable`; the caller then answers here."""

from __future__ import annotations

import dataclasses
import json

from bot.cli_common import answer_stdin_lines, out


def server_client(server: str | None):  # type: ignore[no-untyped-def]
    """A client of the server at `server`, or None to answer in-process."""
    if not server:
        return None
    from bot.api_client import ApiClient
    from bot.config import ServeSettings, load_settings

    token = load_settings(ServeSettings).api_token
    return ApiClient(server, token.get_secret_value() if token else None)


def server_unreachable() -> type[Exception]:
    """The exception a client raises when no server answers (imported late: `--help` stays fast)."""
    from bot.api_client import ServerUnreachable

    return ServerUnreachable


def ask_server(client, question: str, k: int, as_json: bool) -> None:  # type: ignore[no-untyped-def]
    """`ask` through the server: the same output, the model already loaded there."""
    from bot.api_client import answer_from_dict
    from bot.render import answer_markup

    if as_json and question == "-":
        _ask_stream_server(client, k)
        return
    data = client.ask(question, k)
    if as_json:
        out.print(json.dumps(data, ensure_ascii=False), markup=False)
    else:
        out.print(answer_markup(answer_from_dict(data)))


def _ask_stream_server(client, k: int) -> None:  # type: ignore[no-untyped-def]
    client.check()  # unreachable: answer in-process before any line is read
    answer_stdin_lines(lambda line: client.ask(line, k))


def server_chat(client, k: int):  # type: ignore[no-untyped-def]
    """chat's question → answer through the server, follow-ups included."""
    from bot.api_client import answer_from_dict
    from bot.followup import resolve_followup

    def ask(question: str, previous):  # type: ignore[no-untyped-def]
        earlier = {"question": previous.question, "query": previous.query} if previous else None
        answer = answer_from_dict(client.ask(question, k, earlier))
        if answer.query:  # what the server searched, its subject swapped where the follow-up named one
            return answer
        # A server from before `query` was in the JSON: read the follow-up here, without the swap.
        query = resolve_followup(answer.question, previous.query if previous else None)
        return dataclasses.replace(answer, query=query)

    return ask
