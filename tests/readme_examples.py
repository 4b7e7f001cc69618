"""README's examples, made by the current code: the `ask` example and the Telegram conversations.

Each example sits in README.md between `<!-- example: NAME -->` and `<!-- /example -->`.
`tests/test_readme.py` fails when one differs from what the code prints now; after a change that
alters answers, rewrite them all (real model, shipped corpus, a temporary index) with:

    python -m tests.readme_examples
"""

from __future__ import annotations

import html
import json
import re
import sys
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from bot.cli import app
from bot.config import Settings
from bot.engine import Engine
from bot.startup import open_engine
from bot.telegram.state import AnswerStore
from tests.conftest import ROOT, copy_corpus

README = ROOT / "README.md"
ASK_ARGS = ("ask", "-k", "1", "What does Palantir run on?")
# A casual question the reader declines, shown the closest passages apart (`related`).
DECLINED_ARGS = ("ask", "what did they say abt when to act")
JSON_ARGS = ("ask", "--json", "-k", "1", "How many Amazon employees signed the letter?")
PRIVATE_QUESTIONS = ("Who wrote to Jeff Bezos?", "What is the best pizza in Naples?")
GROUP_QUESTION = "What does Palantir run on?"
WIDTH = 100
_BLOCK = re.compile(r"(<!-- example: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(\n<!-- /example -->)", re.DOTALL)


def ask_example(settings: Settings, args: tuple[str, ...] = ASK_ARGS) -> str:
    """`protest-bot ask …` as a user types it in the repository, and what it prints."""
    result = CliRunner().invoke(
        app, ["--corpus", str(settings.corpus), "--index", str(settings.index), *args]
    )
    assert result.exit_code == 0, result.output
    output = result.stdout.replace(f"{settings.corpus}/", "corpus/").rstrip("\n")
    command = " ".join(f'"{a}"' if " " in a else a for a in args)
    return f"```\n$ protest-bot {command}\n{output}\n```"


def json_example(settings: Settings) -> str:
    """`protest-bot ask --json …`, laid out by `python -m json.tool` as README shows it."""
    result = CliRunner().invoke(
        app, ["--corpus", str(settings.corpus), "--index", str(settings.index), *JSON_ARGS]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout.replace(f"{settings.corpus}/", "corpus/"))
    command = " ".join(f'"{a}"' if " " in a else a for a in JSON_ARGS)
    laid_out = json.dumps(data, indent=4, ensure_ascii=False)  # what json.tool --no-ensure-ascii prints
    return f"```\n$ protest-bot {command} | python -m json.tool --no-ensure-ascii\n{laid_out}\n```"


def _bot_reply(engine: Engine, question: str, settings: Settings) -> tuple[list[str], bool]:
    """The messages the bot sends for `question` (the first page of citations, as `Handlers` does),
    and whether it has buttons (More, 👍, 👎): only an answer that cites does."""
    from bot.telegram import render

    page_size = settings.top_k
    answer = engine.answer(question, min(page_size * 3, 20))
    if answer.abstained:
        return [render.not_covered_html(answer)], False
    store = AnswerStore()
    shown = store.get(store.add(answer))
    assert shown is not None
    page, notes = shown.next_page(page_size)
    return render.first_page_messages(answer, page, None, notes), True


def _reply_lines(messages: list[str]) -> list[str]:
    return [line for message in messages for line in [*_as_markdown(message), ""]][:-1]


def _as_markdown(message: str) -> list[str]:
    """A Telegram HTML message as Telegram shows it, in Markdown: bold, and block quotes as ┃ lines."""
    lines: list[str] = []
    parts = re.split(r"<blockquote>(.*?)</blockquote>", message, flags=re.DOTALL)
    for n, part in enumerate(parts):
        text = html.unescape(re.sub(r"<a href=\"[^\"]*\">|</a>", "", part))
        text = text.replace("<b>", "**").replace("</b>", "**").replace("<i>", "*").replace("</i>", "*")
        if n % 2:  # a quote
            lines += ["┃ " + line for line in textwrap.wrap(text, WIDTH - 4)]
            continue
        if text.startswith("\n\n"):
            lines.append("")  # the blank line between two citations
        lines += text.strip("\n").split("\n") if text.strip("\n") else []
    return lines


def private_example(engine: Engine, settings: Settings) -> str:
    lines: list[str] = []
    for question in PRIVATE_QUESTIONS:
        messages, buttons = _bot_reply(engine, question, settings)
        reply = _reply_lines(messages)
        reply[0] = f"**Bot:** {reply[0]}"
        if buttons:
            reply += ["", "`[ More ]  [ 👍 ]  [ 👎 ]`"]
        lines += [f"**You:** {question}", "", *reply, ""]
    return "\n".join(f"> {line}".rstrip() for line in lines[:-1])


def group_example(engine: Engine, settings: Settings) -> str:
    messages, _ = _bot_reply(engine, GROUP_QUESTION, settings)
    reply = _reply_lines(messages)
    reply[0] = f"**Bot** (replying to Alice): {reply[0]}"
    lines = [f"**Alice:** /ask {GROUP_QUESTION}", "", *reply, "", "**Bob:** anyone up for lunch?  "]
    lines[-1] += "*(no answer: not addressed to the bot)*"
    return "\n".join(f"> {line}".rstrip() for line in lines)


def examples(settings: Settings, engine: Engine) -> dict[str, Callable[[], str]]:
    """Each README example by name, as a function that makes it."""
    return {
        "ask": lambda: ask_example(settings),
        "ask-declined": lambda: ask_example(settings, DECLINED_ARGS),
        "json": lambda: json_example(settings),
        "telegram-private": lambda: private_example(engine, settings),
        "telegram-group": lambda: group_example(engine, settings),
    }


def readme_examples(readme: str | None = None) -> dict[str, str]:
    """The examples as README shows them now, by name."""
    text = README.read_text(encoding="utf-8") if readme is None else readme
    return {m["name"]: m["body"] for m in _BLOCK.finditer(text)}


def rewrite(settings: Settings, engine: Engine) -> None:
    """README with every example made anew."""
    made = {name: make() for name, make in examples(settings, engine).items()}
    text = _BLOCK.sub(lambda m: m.group(1) + made[m["name"]] + m.group(4), README.read_text(encoding="utf-8"))
    README.write_text(text, encoding="utf-8")


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(corpus=copy_corpus(Path(folder) / "corpus"), index=Path(folder) / "index")
        rewrite(settings, open_engine(settings, notify=lambda message: print(message, file=sys.stderr)))


if __name__ == "__main__":
    main()
