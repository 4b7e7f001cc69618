"""The command line: a thin layer over the engine. Every command reads input, calls the engine,
renders, prints. Errors become one line on stderr and a non-zero exit code, never a traceback."""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from bot.cli_usage import OneLineUsageErrors, PlainHelp
from bot.errors import BadInputError, ProtestBotError

if TYPE_CHECKING:
    from bot.config import Settings

log = logging.getLogger("bot")
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

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])


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
    from bot.config import Settings  # here, not at the top: `--help` needs no pydantic (0.1 s)

    options = {"corpus": corpus, "index": index, "model": model}
    try:
        ctx.obj = Settings(**{k: v for k, v in options.items() if v is not None})
    except ValueError as exc:
        err.print(
            f"error: invalid setting: {exc.errors()[0]['msg'] if hasattr(exc, 'errors') else exc}",
            markup=False,
        )
        raise typer.Exit(2) from None


def _quiet_libraries(verbose: bool) -> None:
    # httpx logs every request URL at INFO, and Telegram URLs carry the bot token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if not verbose:
        for name in ("sentence_transformers", "transformers", "faiss", "bm25s", "trafilatura", "htmldate"):
            logging.getLogger(name).setLevel(logging.ERROR)


def _notify(message: str) -> None:
    err.print(message, style="dim", markup=False)


def _engine(ctx: typer.Context):  # type: ignore[no-untyped-def]
    from bot.startup import open_engine

    return open_engine(ctx.obj, notify=_notify, progress=err.is_terminal)


TopK = Annotated[
    int, typer.Option("-k", "--top-k", min=1, max=20, metavar="N", help="How many citations at most.")
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


def _client(server: str | None):  # type: ignore[no-untyped-def]
    """A client of the server at `server`, or None to answer in-process."""
    if not server:
        return None
    from bot.api_client import ApiClient
    from bot.config import ServeSettings

    token = ServeSettings().api_token
    return ApiClient(server, token.get_secret_value() if token else None)


def _unreachable() -> type[Exception]:
    from bot.api_client import ServerUnreachable

    return ServerUnreachable


def _ask_server(client, question: str, k: int, as_json: bool) -> None:  # type: ignore[no-untyped-def]
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
    failures = 0
    _tolerant_stdin()
    for number, line in enumerate(sys.stdin, start=1):
        if not line.strip():
            continue
        try:
            data = client.ask(line, k)
        except BadInputError as exc:
            err.print(f"error: line {number}: {exc}", markup=False)
            failures += 1
            continue
        out.print(json.dumps(data, ensure_ascii=False), markup=False)
    if failures:
        raise typer.Exit(2)


@app.command(cls=PlainHelp)
@handles_errors
def ask(
    ctx: typer.Context,
    question: Annotated[
        str,
        typer.Argument(
            metavar="QUESTION", help="The question; with --json, '-' reads one question a line from stdin."
        ),
    ],
    k: TopK = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as one JSON object.")] = False,
    server: ServerOption = None,
) -> None:
    """Answer one question with quoted, cited passages."""
    from bot.render import answer_markup

    client = _client(server)
    if client is not None:
        try:
            _ask_server(client, question, k, as_json)
            return
        except _unreachable() as exc:
            _notify(f"{exc}: answering here")
        finally:
            client.close()
    from bot.engine import validate_question
    from bot.render import answer_dict

    if as_json and question == "-":
        _ask_stream(ctx, k)
        return
    validate_question(question)  # fail fast, before the model loads
    answer = _engine(ctx).answer(question, k)
    if as_json:
        out.print(json.dumps(answer_dict(answer), ensure_ascii=False), markup=False)
    else:
        out.print(answer_markup(answer))


def _ask_stream(ctx: typer.Context, k: int) -> None:
    """One question a line in, one JSON object a line out; the model is loaded once."""
    from bot.render import answer_dict

    engine = _engine(ctx)
    failures = 0
    _tolerant_stdin()
    for number, line in enumerate(sys.stdin, start=1):
        if not line.strip():
            continue
        try:
            answer = engine.answer(line, k)
        except BadInputError as exc:
            err.print(f"error: line {number}: {exc}", markup=False)
            failures += 1
            continue
        out.print(json.dumps(answer_dict(answer), ensure_ascii=False), markup=False)
    if failures:
        raise typer.Exit(2)


def _tolerant_stdin() -> None:
    """Bytes on stdin that are not UTF-8 reach validate_question (which refuses that one question)
    instead of ending the whole stream with a UnicodeDecodeError."""
    if isinstance(sys.stdin, io.TextIOWrapper):
        sys.stdin.reconfigure(errors="surrogateescape")


@app.command(cls=PlainHelp)
@handles_errors
def chat(ctx: typer.Context, k: TopK = 3, server: ServerOption = None) -> None:
    """Ask questions one after another (type exit, or press Ctrl-D, to quit)."""
    from bot.render import answer_markup

    client = _client(server)
    if client is not None:
        try:
            client.check()
            ask = _server_chat(client, k)
        except _unreachable() as exc:
            _notify(f"{exc}: answering here")
            client = None
    if client is None:
        engine = _engine(ctx)
        ask = functools.partial(engine.answer, k=k)
    _tolerant_stdin()
    previous = None  # the last answer, so "how many signed it?" is read with the question before
    # Like `python -i` and sqlite3: the banner and the prompt are for a person at a terminal. Piped
    # input gets the answers alone, not each one glued to a "? " on stdout.
    interactive = _stdin_is_terminal()
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


def _stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def _server_chat(client, k: int):  # type: ignore[no-untyped-def]
    """chat's question → answer through the server, follow-ups included."""
    from bot.api_client import answer_from_dict
    from bot.followup import resolve_followup

    def ask(question: str, previous):  # type: ignore[no-untyped-def]
        earlier = {"question": previous.question, "query": previous.query} if previous else None
        answer = answer_from_dict(client.ask(question, k, earlier))
        # The server searched the question with the one before when it follows it; keeping that
        # text here lets a follow-up of a follow-up be read as it would be in-process.
        query = resolve_followup(answer.question, previous.query if previous else None)
        return dataclasses.replace(answer, query=query)

    return ask


@app.command(cls=PlainHelp)
@handles_errors
def add(
    ctx: typer.Context,
    files: Annotated[
        list[Path], typer.Argument(metavar="FILE...", help="Article files: .txt, .md or .html.")
    ],
    title: Annotated[str | None, typer.Option(metavar="TEXT", help="Title, when the file has none.")] = None,
    outlet: Annotated[str | None, typer.Option(metavar="TEXT", help="Publication.")] = None,
    author: Annotated[str | None, typer.Option(metavar="TEXT", help="Author.")] = None,
    date: Annotated[
        str | None, typer.Option(metavar="DATE", help="Publication date, e.g. 2018-06-22.")
    ] = None,
    url: Annotated[str | None, typer.Option(metavar="URL", help="Where the article was published.")] = None,
    update: Annotated[bool, typer.Option("--update/--no-update", help="Update the index afterwards.")] = True,
) -> None:
    """Copy articles into the corpus and update the index."""
    from bot import articles

    settings: Settings = ctx.obj
    overrides = {"title": title, "outlet": outlet, "author": author, "date": date, "url": url}
    if len(files) > 1 and any(overrides[k] for k in ("title", "url")):
        raise BadInputError("--title and --url describe one article: add files one at a time to use them")
    prepared = [articles.prepare(path, overrides) for path in files]
    articles.check_new(prepared, settings.corpus)
    for path in articles.write(articles.unique_names(prepared, settings.corpus), settings.corpus):
        out.print(f"added {path}", markup=False)
    if update:
        _update(settings, full=False)


def _update(settings: Settings, full: bool) -> None:
    from bot.embed import load_embedder
    from bot.indexer import describe_changes, update_from_settings

    report = update_from_settings(
        settings, load_embedder(settings.model), full=full, progress=err.is_terminal
    )
    changes = describe_changes(report) or "no article changes"
    out.print(
        f"index: {report.articles} articles, {report.passages} passages"
        f" ({changes}; embedded {report.embedded} texts, reused {report.reused})",
        markup=False,
    )
    # Files that cannot be read were each reported once already, with the reason, by the indexer's
    # warning (the one every front end shows); a second line here would repeat it.


@index_app.command("build", cls=PlainHelp)
@handles_errors
def index_build(ctx: typer.Context) -> None:
    """Build the index from scratch (re-embeds everything)."""
    _update(ctx.obj, full=True)


@index_app.command("update", cls=PlainHelp)
@handles_errors
def index_update(ctx: typer.Context) -> None:
    """Embed only new or changed articles and drop removed ones."""
    _update(ctx.obj, full=False)


@index_app.command("status", cls=PlainHelp)
@handles_errors
def index_status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """Articles, passages, model, and whether the corpus changed since the build (exit 1 when stale)."""
    from bot.status import index_status as read_status

    # A damaged index is exit 3 here too, not only at `ask`: every file's size and SHA-256 is checked.
    status = read_status(ctx.obj, verify=True)
    if as_json:
        out.print(json.dumps(status), markup=False)
    else:
        for key, value in status.items():
            if isinstance(value, list):
                if value:
                    out.print(f"{key:>14}: {', '.join(value)}", markup=False)
                continue
            out.print(f"{key:>14}: {value}", markup=False)
        if status["stale"]:
            out.print("The corpus changed since the build: run `protest-bot index update`.", markup=False)
    if status["stale"]:
        raise typer.Exit(1)


@app.command(cls=PlainHelp)
@handles_errors
def sources(ctx: typer.Context) -> None:
    """List the articles the index holds (outlet, date, link)."""
    from bot.manifest import read_manifest
    from bot.render import source_label, source_location

    manifest = read_manifest(ctx.obj.index)
    for n, (_, record) in enumerate(sorted(manifest.articles.items()), start=1):
        source = record.source()
        out.print(f"{n}. {source_label(source)}\n   {source_location(source)}", markup=False)


@app.command(cls=PlainHelp)
@handles_errors
def telegram(
    ctx: typer.Context,
    api_base_url: Annotated[
        str | None,
        typer.Option(
            help="Bot API server; the token is appended. For self-hosted servers and tests.",
            metavar="URL",
            envvar="TELEGRAM_API_BASE_URL",
            show_default="https://api.telegram.org/bot",
        ),
    ] = None,
    webhook_url: Annotated[
        str | None,
        typer.Option(
            help="Public https URL: a webhook instead of polling.",
            envvar="TELEGRAM_WEBHOOK_URL",
            metavar="URL",
        ),
    ] = None,
    webhook_listen: Annotated[
        str | None,
        typer.Option(
            help="Webhook server address.",
            envvar="TELEGRAM_WEBHOOK_LISTEN",
            show_default="0.0.0.0",
            metavar="ADDRESS",
        ),
    ] = None,
    webhook_port: Annotated[
        int | None,
        typer.Option(
            help="Webhook server port.", envvar="TELEGRAM_WEBHOOK_PORT", show_default="8443", metavar="PORT"
        ),
    ] = None,
    rate_limit: Annotated[
        int | None,
        typer.Option(
            help="Questions per user per minute.",
            envvar="TELEGRAM_RATE_LIMIT_PER_MINUTE",
            show_default="20",
            metavar="N",
        ),
    ] = None,
) -> None:
    """Run the Telegram bot (token from TELEGRAM_BOT_TOKEN, secrets from the environment or .env)."""
    from bot.config import load_telegram_settings
    from bot.telegram.app import run

    options = {"api_base_url": api_base_url, "webhook_url": webhook_url, "webhook_listen": webhook_listen}
    tg = load_telegram_settings(**options, webhook_port=webhook_port, rate_limit_per_minute=rate_limit)
    run(ctx.obj, tg)


@app.command(cls=PlainHelp)
@handles_errors
def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None,
        typer.Option(
            help="Address to bind; anything but loopback needs PROTEST_BOT_API_TOKEN.",
            envvar="PROTEST_BOT_HOST",
            show_default="127.0.0.1",
            metavar="HOST",
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            help="Port to bind.",
            envvar="PROTEST_BOT_PORT",
            show_default="8000",
            min=0,
            max=65535,
            metavar="PORT",
        ),
    ] = None,
) -> None:
    """Serve the HTTP API and web page: /ask, /sources, /status, /healthz, /docs, and / in a browser."""
    from pydantic import ValidationError

    from bot.config import ServeSettings
    from bot.serve import run

    options = {"host": host, "port": port}
    try:
        serve_settings = ServeSettings(**{k: v for k, v in options.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise BadInputError(f"invalid setting {where}: {first['msg']}") from None
    run(ctx.obj, serve_settings)


@app.command("eval", cls=PlainHelp)
@handles_errors
def evaluate_command(
    ctx: typer.Context,
    questions: Annotated[
        Path | None,
        typer.Argument(
            metavar="[FILE.jsonl]", help="Question file in the ../shared/eval format (JSON lines)."
        ),
    ] = None,
    k: TopK = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    squad: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR", help="Evaluate retrieval on a SQuAD kit folder instead (../shared/external/squad)."
        ),
    ] = None,
    sample: Annotated[
        int | None,
        typer.Option(min=1, metavar="N", help="With --squad: a fixed random sample of N questions."),
    ] = None,
    squad_index: Annotated[
        Path, typer.Option(metavar="DIR", help="With --squad: where the kit's index is built and kept.")
    ] = Path(".squad-index"),
    unanswerable: Annotated[
        bool,
        typer.Option(
            "--unanswerable",
            help="With --squad: remove a tenth of the paragraphs from the indexed copy; questions that "
            "lose their answer must be declined, the others answered.",
        ),
    ] = False,
    half: Annotated[
        str,
        typer.Option(
            help="With --squad: the kit's articles by file name: first (fit), second (held out), all.",
            metavar="first|second|all",
        ),
    ] = "all",
) -> None:
    """Measure answer quality on a question file: hit@k, MRR@10, quotes, abstention (or --squad)."""
    if squad is not None and unanswerable:
        report = _evaluate_unanswerable(ctx.obj, squad, sample, squad_index, half)
    elif squad is not None:
        report = _evaluate_squad(ctx.obj, squad, sample, squad_index)
    elif questions is not None:
        report = _evaluate_questions(ctx, questions, k)
    else:
        raise BadInputError("give a question file, or --squad DIR")
    data = report.to_dict()
    if as_json:
        out.print(json.dumps(data), markup=False)
        return
    for key, value in data.items():
        if key == "misses":
            for miss in value:  # type: ignore[attr-defined]
                out.print(f"  miss: {miss}", markup=False)
        elif key == "by_kind":
            for kind, figures in value.items():  # type: ignore[attr-defined]
                shown = ", ".join(
                    f"{name} {f:.3f}" if isinstance(f, float) else f"{name} {f}"
                    for name, f in figures.items()
                )
                out.print(f"{'kind ' + kind:>22}: {shown}", markup=False)
        else:
            out.print(
                f"{key:>22}: {value:.4f}" if isinstance(value, float) else f"{key:>22}: {value}", markup=False
            )


def _evaluate_questions(ctx: typer.Context, questions: Path, k: int):  # type: ignore[no-untyped-def]
    from bot.evaluate import evaluate, read_questions

    items = read_questions(questions)
    engine = _engine(ctx)
    return evaluate(
        items,
        ask=lambda q: engine.answer(q, k),
        retrieve=lambda q: [hit.passage.text for hit in engine.retrieve(q, 10)],
        source_text=lambda path: Path(path).read_text(encoding="utf-8"),
    )


def _evaluate_squad(settings: Settings, kit: Path, sample: int | None, index: Path):  # type: ignore[no-untyped-def]
    from bot.evaluate import evaluate_squad_engine, read_squad
    from bot.evaluate import sample as take_sample
    from bot.startup import open_engine

    questions = take_sample(read_squad(kit), sample)
    kit_settings = settings.model_copy(update={"corpus": kit / "articles", "index": index})
    return evaluate_squad_engine(
        open_engine(kit_settings, notify=_notify, progress=err.is_terminal), questions
    )


def _evaluate_unanswerable(settings: Settings, kit: Path, size: int | None, index: Path, half: str):  # type: ignore[no-untyped-def]
    from bot.evaluate import evaluate_unanswerable, sample, squad_articles, write_reduced_kit
    from bot.startup import open_engine

    names = squad_articles(kit, half)
    root = index / f"reduced-{half}"
    cases = write_reduced_kit(kit, names, root / "corpus")
    answerable = sample([c for c in cases if c.answerable], size)
    kept = answerable + [c for c in cases if not c.answerable]
    kit_settings = settings.model_copy(update={"corpus": root / "corpus", "index": root / "index"})
    engine = open_engine(kit_settings, notify=_notify, progress=err.is_terminal)
    return evaluate_unanswerable(engine, kept, half)


def main() -> None:
    """Console-script entry point."""
    app()
