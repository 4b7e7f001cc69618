"""Usage errors in one line, and help in plain text.

Typer reports a bad option value in a box of several lines (or, without rich, in three: usage, hint,
error), and its help tags every value with `<str>`, `<bool>` or `{QUESTION}`. The README promises one
`error:` line and exit code 2 for bad input, and help that reads like any Unix tool's.
"""

from __future__ import annotations

import sys
from typing import Any

import typer

# typer vendors click (pyproject asks for a typer that does); its exceptions are not re-exported.
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption


class OneLineUsageErrors(TyperGroup):
    """The protest-bot command group: usage errors as one `error:` line on stderr, exit code 2."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            # Non-standalone: click returns an exit code instead of exiting, and raises its errors.
            code = super().main(*args, standalone_mode=False, **kwargs)
        except NoArgsIsHelpError as exc:
            exc.show()  # `protest-bot` alone: the help, as before
            sys.exit(exc.exit_code)
        except ClickException as exc:
            typer.echo(f"error: {_one_line(exc)}", err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _one_line(exc: ClickException) -> str:
    message = " ".join(exc.format_message().split()).rstrip(".")
    context = getattr(exc, "ctx", None)
    if isinstance(exc, UsageError) and context is not None:
        message += f" (see {context.command_path} --help)"
    return message


class PlainHelp(TyperCommand):
    """A command whose help reads like any Unix tool's: `ask [OPTIONS] QUESTION`, arguments by their
    metavar, without typer's `{required}` braces and `<str>` type tags."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        return pieces + [_metavar(p) for p in self.get_params(ctx) if isinstance(p, TyperArgument)]

    def format_options(self, ctx: Any, formatter: Any) -> None:
        params = self.get_params(ctx)
        arguments = [(_metavar(p), p.help or "") for p in params if isinstance(p, TyperArgument)]
        options = [p.get_help_record(ctx) for p in params if isinstance(p, TyperOption) or p.name == "help"]
        for title, rows in (("Arguments", arguments), ("Options", [r for r in options if r])):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def _metavar(argument: TyperArgument) -> str:
    return argument.metavar or (argument.name or "").upper()
