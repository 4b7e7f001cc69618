"""The commands that fill and describe the index: `add`, `index build|update|status`, `sources`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bot.cli_common import err, handles_errors, out
from bot.errors import BadInputError

if TYPE_CHECKING:
    from bot.config import Settings


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
        settings, load_embedder(settings.model, settings.batch_size), full=full, progress=err.is_terminal
    )
    changes = describe_changes(report) or "no article changes"
    out.print(
        f"index: {report.articles} articles, {report.passages} passages"
        f" ({changes}; embedded {report.embedded} texts, reused {report.reused})",
        markup=False,
    )
    # Files that cannot be read were each reported once already, with the reason, by the indexer's
    # warning (the one every front end shows); a second line here would repeat it.


@handles_errors
def index_build(ctx: typer.Context) -> None:
    """Build the index from scratch (re-embeds everything)."""
    _update(ctx.obj, full=True)


@handles_errors
def index_update(ctx: typer.Context) -> None:
    """Embed only new or changed articles and drop removed ones."""
    _update(ctx.obj, full=False)


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


@handles_errors
def sources(ctx: typer.Context) -> None:
    """List the articles the index holds (outlet, date, link)."""
    from bot.manifest import read_manifest
    from bot.render import source_label, source_location

    manifest = read_manifest(ctx.obj.index)
    for n, (_, record) in enumerate(sorted(manifest.articles.items()), start=1):
        source = record.source()
        out.print(f"{n}. {source_label(source)}\n   {source_location(source)}", markup=False)
