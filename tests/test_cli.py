"""The command line, run for real with typer's CliRunner: every command, the JSON contract, bad input."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from bot import store
from bot.articles import title_slug
from bot.cli import app
from bot.config import Settings
from tests.conftest import ROOT
from tests.fakes import FAKE_MODEL

runner = CliRunner()


def run(settings: Settings, *args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    """Invoke the CLI against the settings' corpus, index and model."""
    base = ["--corpus", str(settings.corpus), "--index", str(settings.index), "--model", settings.model]
    return runner.invoke(app, [*base, *args], input=input)


def tree(folder: Path) -> dict[str, bytes]:
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


# --- answering, with the real model -------------------------------------------------------------


def test_ask_json_follows_the_contract(real_settings: Settings) -> None:
    result = run(real_settings, "ask", "--json", "Who wrote to Jeff Bezos?")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"question", "abstained", "answer", "citations", "answer_span", "query", "related"}
    assert data["question"] == "Who wrote to Jeff Bezos?"
    assert data["abstained"] is False and isinstance(data["answer"], str) and data["answer"]
    assert [c["n"] for c in data["citations"]] == list(range(1, len(data["citations"]) + 1))
    assert data["citations"]
    for citation in data["citations"]:
        assert set(citation) == {"n", "passage", "quote", "score", "sources"}
        assert isinstance(citation["score"], float)
        assert squash(citation["quote"]) in squash(citation["passage"])
        for source in citation["sources"]:
            assert set(source) == {"id", "title", "outlet", "date", "url", "path", "label"}
            assert source["label"] and (not source["title"] or source["label"] == source["title"])
            assert isinstance(source["title"], str)
            assert squash(citation["quote"]) in squash(Path(source["path"]).read_text(encoding="utf-8"))
    assert any("Bezos" in c["quote"] for c in data["citations"])
    span = data["answer_span"]
    assert span is None or (
        set(span) == {"n", "text"} and span["text"] in data["citations"][span["n"] - 1]["quote"]
    )


def test_ask_json_gives_the_answering_words_of_a_number_question(real_settings: Settings) -> None:
    data = json.loads(
        run(real_settings, "ask", "--json", "How many Amazon employees signed the letter?").stdout
    )
    span = data["answer_span"]
    assert span is not None and span["n"] == 1
    assert span["text"] in data["citations"][0]["quote"]
    assert any(ch.isdigit() for ch in span["text"])


def test_ask_json_abstains_with_no_citations(real_settings: Settings) -> None:
    data = json.loads(run(real_settings, "ask", "--json", "What is the speed of light?").stdout)
    assert data["abstained"] is True
    assert data["citations"] == []
    assert data["answer_span"] is None
    assert "don't cover" in data["answer"]


def test_ask_json_stream_reads_one_question_a_line(real_settings: Settings) -> None:
    result = run(
        real_settings, "ask", "--json", "-", input="What does Palantir run on?\n\nBest pizza in Naples?\n"
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["question"] for d in lines] == ["What does Palantir run on?", "Best pizza in Naples?"]
    assert lines[0]["abstained"] is False and lines[1]["abstained"] is True


def test_ask_prints_numbered_citations_with_sources(real_settings: Settings) -> None:
    result = run(real_settings, "ask", "-k", "2", "What does Palantir run on?")
    assert result.exit_code == 0, result.output
    assert "[1]" in result.stdout and "[3]" not in result.stdout
    assert "Palantir runs on AWS" in result.stdout
    assert "corpus/" in result.stdout


def test_chat_answers_until_exit(real_settings: Settings) -> None:
    result = run(real_settings, "chat", input="What does Palantir run on?\n\nexit\nnever asked\n")
    assert result.exit_code == 0, result.output
    assert "Palantir runs on AWS" in result.stdout
    assert result.stdout.count("” [1]") == 1  # one answer: its first line ends with its citation mark


def test_chat_ends_on_end_of_input(real_settings: Settings) -> None:
    result = run(real_settings, "chat", input="What does Palantir run on?\n")
    assert result.exit_code == 0
    assert "Palantir runs on AWS" in result.stdout


# --- bad questions ------------------------------------------------------------------------------


@pytest.mark.parametrize("question", ["", "   ", "\x00", "x" * 5000])
def test_bad_questions_get_one_line_and_exit_2(built: Settings, question: str) -> None:
    result = run(built, "ask", question)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "Traceback" not in result.output


# --- usage errors and help ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["ask", "-k", "0", "x"],
        ["ask", "-k", "100", "x"],
        ["chat", "-k", "0"],
        ["ask"],
        ["ask", "--no-such-option", "x"],
        ["no-such-command"],
    ],
    ids=["k-0", "k-100", "chat-k-0", "no-question", "unknown-option", "unknown-command"],
)
def test_usage_errors_are_one_line_and_exit_2(built: Settings, args: list[str]) -> None:
    result = run(built, *args)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    assert result.stdout == ""


def _command_paths(group: typer.core.TyperGroup, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, typer.core.TyperGroup):
            paths += _command_paths(command, (*prefix, name))
        else:
            paths.append((*prefix, name))
    return paths


def test_help_is_plain_text() -> None:
    # typer's default help draws boxes and tags values `<bool>`, `<str>`, `{question}`.
    for path in _command_paths(typer.main.get_command(app)):  # type: ignore[arg-type]
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("Usage: "), path
        tags = re.findall(r"<[a-z][^>]*>|\{\w+\}|[╭│╰]", result.stdout)
        assert not tags, f"protest-bot {' '.join(path)} --help shows {tags}"
    assert " ask [OPTIONS] QUESTION\n" in runner.invoke(app, ["ask", "--help"]).stdout


# --- the index from the command line ------------------------------------------------------------


def test_first_ask_builds_the_missing_index(settings: Settings) -> None:
    result = run(settings, "ask", "--json", "Palantir")
    assert result.exit_code == 0, result.output
    assert "No index yet" in result.stderr
    json.loads(result.stdout)
    assert store.read_manifest(settings.index).passages > 0


def test_ask_updates_a_stale_index(built: Settings) -> None:
    shutil.copy(ROOT / "tests" / "data" / "extra-article.md", built.corpus / "extra-article.md")
    result = run(built, "ask", "--json", "Palantir")
    assert result.exit_code == 0, result.output
    assert "changed since the index was built" in result.stderr
    assert "extra-article" in store.read_manifest(built.index).articles


def test_ask_after_the_corpus_moved_cites_where_the_articles_are_now(built: Settings, tmp_path: Path) -> None:
    moved = Settings(corpus=tmp_path / "moved" / "corpus", index=built.index, model=built.model)
    moved.corpus.parent.mkdir()
    built.corpus.rename(moved.corpus)
    vectors = store.read_manifest(built.index).passages
    status = run(moved, "index", "status", "--json")  # not stale (it answers the same), but moved
    assert status.exit_code == 0 and len(json.loads(status.stdout)["moved"]) == 5
    result = run(moved, "ask", "--json", "Palantir")
    assert result.exit_code == 0, result.output
    assert "changed since the index was built: updating it (5 moved)" in result.stderr
    paths = {s["path"] for c in json.loads(result.stdout)["citations"] for s in c["sources"]}
    assert paths and all(Path(p).parent == moved.corpus and Path(p).is_file() for p in paths)
    assert store.read_manifest(built.index).passages == vectors
    # Recorded: the next question starts without an update.
    assert "moved" not in run(moved, "ask", "--json", "Palantir").stderr


def test_index_build_update_status(settings: Settings) -> None:
    assert run(settings, "index", "status").exit_code == 3
    build = run(settings, "index", "build")
    assert build.exit_code == 0, build.output
    assert "5 articles" in build.stdout
    status = run(settings, "index", "status", "--json")
    assert status.exit_code == 0
    data = json.loads(status.stdout)
    assert data["articles"] == 5 and data["stale"] is False and data["model"] == FAKE_MODEL
    shutil.copy(ROOT / "tests" / "data" / "extra-article.md", settings.corpus / "extra-article.md")
    stale = run(settings, "index", "status")
    assert stale.exit_code == 1 and "index update" in stale.stdout
    update = run(settings, "index", "update")
    assert update.exit_code == 0 and "1 new" in update.stdout
    assert run(settings, "index", "status").exit_code == 0


def test_corrupt_index_is_one_line_and_exit_3(built: Settings) -> None:
    dense = store.current_version(built.index) / store.DENSE
    dense.write_bytes(dense.read_bytes()[:100])
    result = run(built, "ask", "Palantir")
    assert result.exit_code == 3
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "index build" in result.stderr


def test_model_mismatch_is_one_line_and_exit_3(built: Settings, fake_embedder: object) -> None:
    from bot.embed import register_embedder
    from tests.fakes import HashEmbedder

    other = HashEmbedder()
    other.name = "another-fake"
    register_embedder("another-fake", lambda: other)
    result = runner.invoke(
        app,
        ["--corpus", str(built.corpus), "--index", str(built.index), "--model", "another-fake", "ask", "x"],
    )
    assert result.exit_code == 3
    assert FAKE_MODEL in result.stderr and "another-fake" in result.stderr


def test_sources_lists_the_articles(built: Settings) -> None:
    result = run(built, "sources")
    assert result.exit_code == 0
    assert "Metro US" in result.stdout
    assert len(re.findall(r"^\d+\. ", result.stdout, re.MULTILINE)) == 5


# --- adding articles ----------------------------------------------------------------------------


def test_add_copies_with_metadata_and_updates_the_index(built: Settings, tmp_path: Path) -> None:
    article = tmp_path / "letter-two.txt"
    article.write_text((ROOT / "tests" / "data" / "extra-article.md").read_text().split("---\n", 2)[2])
    result = run(built, "add", str(article), "--title", "Second letter", "--outlet", "Example News")
    assert result.exit_code == 0, result.output
    stored = (built.corpus / "second-letter.txt").read_text(encoding="utf-8")  # named from --title
    assert stored.startswith("---\ntitle: Second letter\noutlet: Example News\n")
    manifest = store.read_manifest(built.index)
    assert manifest.articles["second-letter"].outlet == "Example News"
    assert run(built, "index", "status").exit_code == 0


def test_added_article_is_readable_by_others_like_any_new_file(built: Settings, tmp_path: Path) -> None:
    # A bot running as another user (the container's uid) must be able to read what `add` wrote.
    article = tmp_path / "letter-three.md"
    shutil.copy(ROOT / "tests" / "data" / "extra-article.md", article)
    umask = os.umask(0o022)
    try:
        result = run(built, "add", str(article))
    finally:
        os.umask(umask)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE((built.corpus / "a-second-letter.md").stat().st_mode) == 0o644


def test_add_html_extracts_the_article(built: Settings) -> None:
    page = ROOT / "tests" / "data" / "page.html"
    result = run(built, "add", str(page))
    assert result.exit_code == 0, result.output
    stored = (built.corpus / "warehouse-workers-petition.md").read_text(encoding="utf-8")
    assert "Warehouse workers in Seattle signed a petition" in stored
    assert "Subscribe to our newsletter" not in stored and "<p>" not in stored
    assert "title: Warehouse workers petition" in stored


def _bad_files(tmp_path: Path, corpus: Path) -> dict[str, Path]:
    files = {
        "empty": tmp_path / "empty.txt",
        "binary": tmp_path / "binary.txt",
        "latin1": tmp_path / "latin1.txt",
        "chrome-only": tmp_path / "chrome.txt",
        "wrong-type": tmp_path / "sheet.pdf",
        "bad-front-matter": tmp_path / "bad.md",
    }
    files["empty"].write_bytes(b"")
    files["binary"].write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 10)
    files["latin1"].write_bytes(
        "Les employés ont signé une lettre à propos de la reconnaissance faciale.".encode("latin-1")
    )
    files["chrome-only"].write_text("Log in\nSign up\nShare\nComments are closed.\n")
    files["wrong-type"].write_bytes(b"%PDF-1.4")
    files["bad-front-matter"].write_text("---\ntitle: [unclosed\n---\nA sentence of the body is here.\n")
    duplicate = tmp_path / "duplicate.md"
    shutil.copy(sorted(corpus.glob("*.md"))[0], duplicate)
    files["duplicate"] = duplicate
    files["missing"] = tmp_path / "does-not-exist.txt"
    link = tmp_path / "link.txt"
    link.symlink_to(ROOT / "README.md")
    files["symlink"] = link
    return files


@pytest.mark.parametrize(
    "kind",
    [
        "empty",
        "binary",
        "latin1",
        "chrome-only",
        "wrong-type",
        "bad-front-matter",
        "duplicate",
        "missing",
        "symlink",
    ],
)
def test_bad_articles_are_refused_and_nothing_changes(built: Settings, tmp_path: Path, kind: str) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    files = _bad_files(incoming, built.corpus)
    corpus_before, index_before = tree(built.corpus), tree(built.index)
    good = incoming / "good.txt"
    good.write_text("A perfectly good article sentence about the protest letter is here.\n")
    result = run(built, "add", str(good), str(files[kind]))  # the good file must not slip in either
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.output
    assert tree(built.corpus) == corpus_before
    assert tree(built.index) == index_before


# --- documentation ------------------------------------------------------------------------------


def test_every_command_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    group = typer.main.get_command(app)
    commands = list(group.commands)  # type: ignore[attr-defined]
    index_commands = list(group.commands["index"].commands)  # type: ignore[attr-defined]
    assert {"ask", "chat", "add", "index", "sources", "eval"} <= set(commands)
    for command in commands:
        if command != "index":
            assert f"protest-bot {command}" in readme, f"`protest-bot {command}` is not in README.md"
    for command in index_commands:
        assert f"protest-bot index {command}" in readme, f"`protest-bot index {command}` is not in README.md"


# --- chat, piped and at a terminal ---------------------------------------------------------------


def test_piped_chat_prints_answers_without_prompts(built: Settings) -> None:
    # Like `python -i` and sqlite3: no banner and no "? " prompt glued to each answer on stdout.
    result = run(built, "chat", input="What does Palantir run on?\nWho signed the letter?\n")
    assert result.exit_code == 0, result.output
    assert "Ask about" not in result.stdout
    assert not [line for line in result.stdout.splitlines() if line.startswith("?")]
    assert result.stdout.startswith("“")  # the first answer's first line: its answer, quoted
    assert result.stdout.count("\n[1] ") == 2  # each answer's first citation, after a blank line


def test_chat_at_a_terminal_shows_the_banner_and_prompts(
    built: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bot.cli_ask.stdin_is_terminal", lambda: True)
    result = run(built, "chat", input="What does Palantir run on?\n")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Ask about the June 2018 Amazon employee protest.")
    assert result.stdout.count("\n? ") == 2  # before the question, and before the end of input


# --- duplicates are the same text, whatever the file around it -----------------------------------

WALKOUT = (
    "Amazon employees walked out of the Seattle office on Friday to protest the sale of Rekognition.\n\n"
    "The walkout followed a letter to Jeff Bezos signed by hundreds of workers.\n"
)


def test_the_same_text_under_another_name_or_front_matter_is_a_duplicate(
    built: Settings, tmp_path: Path
) -> None:
    original = tmp_path / "walkout.txt"
    original.write_text(WALKOUT)
    added = run(
        built, "add", str(original), "--title", "Walkout", "--outlet", "Seattle Times", "--date", "2018-06-29"
    )
    assert added.exit_code == 0, added.output
    stored = next(p.name for p in built.corpus.iterdir() if p.stem == "walkout")
    before = tree(built.corpus), tree(built.index)
    copy = tmp_path / "walkout-copy.md"
    copy.write_text("---\ntitle: Another title\n---\n" + WALKOUT.replace("\n\n", "\n\n\n"))
    for again in (copy, original):
        result = run(built, "add", str(again))
        assert result.exit_code == 2, result.output
        assert result.stderr == f"error: {again.name}: is already in the corpus as {stored}\n"
    assert (tree(built.corpus), tree(built.index)) == before


def test_added_files_are_named_from_their_titles_uniquely_and_existing_ones_keep_theirs(
    built: Settings, tmp_path: Path
) -> None:
    existing = sorted(p.name for p in built.corpus.iterdir())
    first, second, untitled = tmp_path / "dl_8812.txt", tmp_path / "page (1).txt", tmp_path / "notes.txt"
    first.write_text("Workers at the warehouse signed a petition about facial recognition sales.\n")
    second.write_text("A different article: the petition reached Jeff Bezos on Monday morning.\n")
    untitled.write_text("An article without a title keeps the name of its file when it is added.\n")
    title = "Amazon workers protest facial recognition software sale to cops"
    for path in (first, second):
        result = run(built, "add", str(path), "--title", title)
        assert result.exit_code == 0, result.output
    assert run(built, "add", str(untitled)).exit_code == 0
    added = sorted(set(p.name for p in built.corpus.iterdir()) - set(existing))
    assert added == [
        "amazon-workers-protest-facial-recognition-2.txt",
        "amazon-workers-protest-facial-recognition.txt",
        "notes.txt",
    ]
    assert set(existing) <= {p.name for p in built.corpus.iterdir()}
    assert title_slug("Ünïcødé: IBM’s “work” — 1940s") == "unicde-ibms-work-1940s"
    assert title_slug("名前") == "" and title_slug("README") == ""


class _OldServer:
    """A server from before `query` was in the JSON contract: it answers, but says nothing of what it
    searched. Records what chat sends it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict | None]] = []  # type: ignore[type-arg]

    def ask(self, question: str, k: int, previous: dict | None = None) -> dict:  # type: ignore[type-arg]
        self.sent.append((question, previous))
        return {"question": question, "abstained": True, "answer": "not covered", "citations": []}


def test_chat_through_an_older_server_reads_follow_ups_itself() -> None:
    from bot.cli_server import server_chat

    server = _OldServer()
    ask = server_chat(server, 3)
    first = ask("Who wrote to Jeff Bezos?", None)
    assert first.query == "Who wrote to Jeff Bezos?"
    follow = ask("how many signed it?", first)
    # Read with the question before, as in-process chat does without a subject to swap.
    assert follow.query == "Who wrote to Jeff Bezos? how many signed it?"
    assert server.sent[1][1] == {"question": "Who wrote to Jeff Bezos?", "query": "Who wrote to Jeff Bezos?"}
    new_topic = ask("What is the speed of light?", follow)
    assert new_topic.query == "What is the speed of light?"
