"""The bad-input catalogue of docs/RELIABILITY.md, command-line rows: each bad question, article, corpus
or index gets one clear `error:` line and its exit code, and the corpus and index stay byte for byte as
they were. Rows already covered in test_cli.py / test_index.py are not repeated here.

Most rows run the real CLI in-process (typer's CliRunner). Rows that need a real process — bytes that
are not UTF-8 on the command line or stdin, and folders that the permission bits close to everyone but
root — run tests/crash_runner.py, which is the same CLI with the fake model registered.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot import store
from bot.cli import app
from bot.config import Settings
from bot.manifest import CURRENT, DENSE, MANIFEST, PASSAGES, SENTENCES, current_version, read_manifest
from tests.conftest import ROOT
from tests.crash_runner import command, obey_file_permissions, permissions_bind
from tests.fakes import FAKE_MODEL

runner = CliRunner()
EXTRA = Path(__file__).resolve().parent / "data" / "extra-article.md"


def run(settings: Settings, *args: str, input: str | bytes | None = None):  # type: ignore[no-untyped-def]
    """The CLI, in-process, on the settings' corpus, index and model."""
    base = ["--corpus", str(settings.corpus), "--index", str(settings.index), "--model", settings.model]
    return runner.invoke(app, [*base, *args], input=input)


def run_process(
    settings: Settings,
    *args: str,
    stdin: bytes = b"",
    restricted: bool = False,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """The CLI as a process (tests/crash_runner.py); `restricted`: the permission bits bind root too."""
    if restricted and not permissions_bind():
        pytest.skip("this machine lets the test process ignore file permissions (root without prctl)")
    return subprocess.run(
        command(settings.corpus, settings.index, *args),
        input=stdin,
        capture_output=True,
        timeout=120,
        cwd=settings.corpus.parent,  # no .env from the repository
        env={**os.environ, **(env or {})},
        preexec_fn=obey_file_permissions if restricted else None,
    )


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden ones included) → its bytes; {} when the folder is absent."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def warnings(caplog: pytest.LogCaptureFixture) -> str:
    """The warnings logged so far (in a process of its own, the CLI prints them on stderr)."""
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def one_error_line(stderr: str) -> str:
    """The single `error:` line on stderr (and nothing else there); no traceback."""
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


@pytest.fixture
def unchanged(built: Settings):  # type: ignore[no-untyped-def]
    """Asserts, after the test, that the corpus and index are byte-identical to before it."""
    before = tree(built.corpus), tree(built.index)
    yield built
    assert (tree(built.corpus), tree(built.index)) == before, "the corpus or index changed"


# --- questions ----------------------------------------------------------------------------------


def test_question_of_100000_characters_is_refused(unchanged: Settings) -> None:
    result = run(unchanged, "ask", "Who signed? " * 8333 + "Why?")
    assert result.exit_code == 2
    assert "too long (100000 characters; the limit is 1000)" in one_error_line(result.stderr)


def test_question_with_a_nul_byte_is_answered_without_it(unchanged: Settings) -> None:
    # A NUL cannot be passed on a command line (execve ends the argument there); stdin can carry it.
    result = run(unchanged, "ask", "--json", "-", input="What does Palantir\x00 run on?\n")
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    assert json.loads(line)["question"] == "What does Palantir run on?"


def test_question_of_invalid_utf8_on_the_command_line_is_refused(unchanged: Settings) -> None:
    result = run_process(unchanged, "ask", os.fsdecode(b"Who wrote to \xff\xfe Bezos?"))
    assert result.returncode == 2
    assert "not valid UTF-8" in one_error_line(result.stderr.decode())
    assert result.stdout == b""


@pytest.mark.parametrize("utf8_mode", ["0", "1"], ids=["strict-stdin", "utf8-mode"])
def test_question_of_invalid_utf8_on_stdin_is_refused_and_the_rest_answered(
    unchanged: Settings, utf8_mode: str
) -> None:
    # Python decodes stdin strictly under a UTF-8 locale, and with surrogateescape in UTF-8 mode.
    lines = b"Who wrote to \xff Bezos?\nWhat does Palantir run on?\n"
    env = {"LC_ALL": "C.UTF-8", "PYTHONUTF8": utf8_mode}
    result = run_process(unchanged, "ask", "--json", "-", stdin=lines, env=env)
    assert result.returncode == 2
    assert "line 1: the question is not valid UTF-8" in one_error_line(result.stderr.decode())
    (answer,) = result.stdout.decode().splitlines()
    assert json.loads(answer)["question"] == "What does Palantir run on?"


def test_chat_refuses_invalid_utf8_and_goes_on(unchanged: Settings) -> None:
    lines = b"Who wrote to \xff Bezos?\nWhat does Palantir run on?\nexit\n"
    result = run_process(unchanged, "chat", stdin=lines, env={"LC_ALL": "C.UTF-8", "PYTHONUTF8": "0"})
    assert result.returncode == 0, result.stderr
    assert "not valid UTF-8" in one_error_line(result.stderr.decode())
    assert "[1]" in result.stdout.decode()


# --- articles -----------------------------------------------------------------------------------


def test_article_of_50_mb_is_refused_by_add(unchanged: Settings, tmp_path: Path) -> None:
    huge = tmp_path / "huge.txt"
    with huge.open("wb") as handle:
        handle.write(b"Amazon employees wrote a letter to Jeff Bezos.\n")
        handle.truncate(50 * 1024 * 1024)  # sparse: 50 MB on paper, nothing on disk
    result = run(unchanged, "add", str(huge))
    assert result.exit_code == 2
    assert "huge.txt: is 50 MB; articles over 5 MB are refused" in one_error_line(result.stderr)


def test_article_of_50_mb_dropped_into_the_corpus_is_skipped(
    built: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    line = b"Amazon employees wrote a letter to Jeff Bezos about Rekognition, Palantir and the police.\n"
    huge = built.corpus / "huge.txt"
    huge.write_bytes(line * (50 * 1024 * 1024 // len(line) + 1))  # real text this time
    index_before = tree(built.index)
    started = time.monotonic()
    result = run(built, "index", "update")
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started < 30, "a 50 MB file must be refused, not read, chunked and embedded"
    assert "huge.txt: is 50 MB; articles over 5 MB are refused" in warnings(caplog)
    manifest = read_manifest(built.index)
    assert "huge" not in manifest.articles and "huge" in manifest.skipped
    assert len(manifest.articles) == 5
    assert tree(built.index) != index_before  # the skip is recorded, so the index is not stale
    assert run(built, "index", "status").exit_code == 0


_BOMB = "\n".join(
    [
        'a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]',
        *[f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]" for p, n in zip("abcdefg", "bcdefgh", strict=True)],
        "title: *h",
    ]
)


@pytest.mark.parametrize(
    ("front_matter", "expected"),
    [
        ("title: [unclosed", "front matter is not valid YAML"),
        ("- a list\n- not a mapping", "front matter must be 'key: value' lines"),
        ("title:\n  nested: mapping", "'title' must be text"),
        ("title: [a, list]", "'title' must be text"),
        (_BOMB, "'title' must be text"),  # 9^8 strings if expanded: seconds and hundreds of MB
        ("title: !!python/object/apply:os.system ['touch PWNED']", "front matter is not valid YAML"),
        ("title: ok\n\tauthor: tab", "front matter is not valid YAML"),
    ],
    ids=["unclosed", "list", "mapping-title", "list-title", "alias-bomb", "python-tag", "tab"],
)
def test_malformed_front_matter_is_refused_by_add(
    unchanged: Settings, tmp_path: Path, front_matter: str, expected: str
) -> None:
    article = tmp_path / "bad.md"
    article.write_text(f"---\n{front_matter}\n---\nEmployees wrote a letter about the contract.\n")
    started = time.monotonic()
    result = run(unchanged, "add", str(article))
    assert result.exit_code == 2, result.output
    assert expected in one_error_line(result.stderr)
    assert time.monotonic() - started < 5
    assert not (tmp_path / "PWNED").exists() and not (unchanged.corpus.parent / "PWNED").exists()


def test_malformed_front_matter_dropped_into_the_corpus_is_skipped(
    built: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    (built.corpus / "bomb.md").write_text(f"---\n{_BOMB}\n---\nEmployees wrote a letter.\n")
    result = run(built, "index", "update")
    assert result.exit_code == 0, result.output
    assert "bomb.md: the front matter field" in warnings(caplog)
    manifest = read_manifest(built.index)
    assert "bomb" in manifest.skipped and len(manifest.to_json()) < 100_000


@pytest.mark.parametrize("name", ["README.md", "readme.txt", "ReadMe.html"])
def test_an_article_named_readme_is_refused_and_the_corpus_readme_kept(
    unchanged: Settings, tmp_path: Path, name: str
) -> None:
    (unchanged.corpus / "README.md").write_text("# The corpus\n\nWhat this folder holds.\n")
    readme = (unchanged.corpus / "README.md").read_bytes()
    article = tmp_path / name
    article.write_text("Employees wrote a second letter about cloud contracts with the agency.\n")
    result = run(unchanged, "add", str(article))
    assert result.exit_code == 2, result.output
    assert "rename the file" in one_error_line(result.stderr)
    assert (unchanged.corpus / "README.md").read_bytes() == readme
    (unchanged.corpus / "README.md").unlink()


# --- the corpus folder --------------------------------------------------------------------------


@pytest.mark.parametrize("args", [("index", "update"), ("index", "build"), ("ask", "Palantir")])
def test_missing_corpus_folder(unchanged: Settings, tmp_path: Path, args: tuple[str, ...]) -> None:
    settings = unchanged.model_copy(update={"corpus": tmp_path / "no-such-corpus"})
    result = run(settings, *args)
    assert result.exit_code == 1
    assert "the corpus folder" in one_error_line(result.stderr) and "does not exist" in result.stderr


def test_missing_corpus_folder_creates_no_index_folder(settings: Settings, tmp_path: Path) -> None:
    settings = settings.model_copy(update={"corpus": tmp_path / "no-such-corpus"})
    result = run(settings, "index", "build")
    assert result.exit_code == 1
    assert not settings.index.exists()


def test_unreadable_corpus_folder(unchanged: Settings) -> None:
    unchanged.corpus.chmod(0)
    try:
        result = run_process(unchanged, "index", "update", restricted=True)
    finally:
        unchanged.corpus.chmod(0o755)
    assert result.returncode == 1
    assert "cannot be read (permission denied)" in one_error_line(result.stderr.decode())


def test_unreadable_article_is_skipped_with_a_warning(built: Settings) -> None:
    secret = built.corpus / "private.md"
    shutil.copy(EXTRA, secret)
    secret.chmod(0)
    try:
        result = run_process(built, "index", "update", restricted=True)
    finally:
        secret.chmod(0o644)
    assert result.returncode == 0, result.stderr
    assert "private.md" in result.stderr.decode() and "Traceback" not in result.stderr.decode()
    assert "private" not in read_manifest(built.index).articles


def test_a_file_that_is_not_utf8_dropped_into_the_corpus_gets_one_warning_and_no_count(
    built: Settings,
) -> None:
    (built.corpus / "latin1.txt").write_bytes("Les employés d’Amazon ont écrit.".encode("cp1252"))
    shutil.copy(EXTRA, built.corpus / "extra.md")
    result = run_process(built, "index", "update")
    assert result.returncode == 0, result.stderr
    stderr = result.stderr.decode()
    assert len(stderr.splitlines()) == 1, stderr  # once, with the reason; not again as `warning:`
    assert "latin1.txt: is not UTF-8 text" in stderr
    summary = result.stdout.decode()
    assert "(1 new;" in summary, summary  # the article added, not the file skipped


# --- the index folder ---------------------------------------------------------------------------


@pytest.mark.parametrize("args", [("ask", "Palantir"), ("index", "update"), ("index", "status")])
def test_unreadable_index_folder(unchanged: Settings, args: tuple[str, ...]) -> None:
    unchanged.index.chmod(0)
    try:
        result = run_process(unchanged, *args, restricted=True)
    finally:
        unchanged.index.chmod(0o755)
    assert result.returncode == 3, result.stderr
    line = one_error_line(result.stderr.decode())
    assert "the index folder" in line and "permission denied" in line


def _read_only(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)


def _writable(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)


def test_read_only_index_folder_refuses_an_update(unchanged: Settings) -> None:
    new_article = unchanged.corpus / "extra-article.md"
    shutil.copy(EXTRA, new_article)  # something to update, so the update must write
    _read_only(unchanged.index)
    try:
        result = run_process(unchanged, "index", "update", restricted=True)
    finally:
        _writable(unchanged.index)
        new_article.unlink()
    assert result.returncode == 3
    assert "is not writable (permission denied)" in one_error_line(result.stderr.decode())


def test_read_only_index_folder_still_answers(unchanged: Settings) -> None:
    _read_only(unchanged.index)
    try:
        result = run_process(unchanged, "ask", "--json", "What does Palantir run on?", restricted=True)
    finally:
        _writable(unchanged.index)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["question"] == "What does Palantir run on?"


def test_read_only_index_folder_with_a_changed_corpus_answers_from_the_index_as_built(
    unchanged: Settings,
) -> None:
    new_article = unchanged.corpus / "extra-article.md"
    shutil.copy(EXTRA, new_article)  # the index is stale, and cannot be updated here
    _read_only(unchanged.index)
    try:
        result = run_process(unchanged, "ask", "--json", "What does Palantir run on?", restricted=True)
    finally:
        _writable(unchanged.index)
        new_article.unlink()
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    assert "could not update the index" in stderr and "not writable" in stderr
    assert "Traceback" not in stderr
    assert json.loads(result.stdout)["citations"]


def _rewrite_manifest(index: Path, **changes: object) -> None:
    path = current_version(index) / MANIFEST
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(changes)
    path.write_text(json.dumps(data), encoding="utf-8")


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_middle_bytes(path: Path) -> None:
    # Same size, same header: only numbers inside the array change, which no parser notices.
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    path.write_bytes(bytes(data))


def _garbage_inside_passages(index: Path) -> None:
    # Same size, first and last lines intact (the load checks those): every line between is broken.
    path = current_version(index) / PASSAGES
    lines = path.read_bytes().splitlines(keepends=True)
    broken = [line.replace(b'"text"', b"#text#", 1) for line in lines[1:-1]]
    path.write_bytes(b"".join([lines[0], *broken, lines[-1]]))


DAMAGE = {
    "faiss-truncated": lambda index: _truncate(current_version(index) / DENSE),
    "faiss-garbage": lambda index: (current_version(index) / DENSE).write_bytes(
        b"\xff" * (current_version(index) / DENSE).stat().st_size
    ),
    "faiss-missing": lambda index: (current_version(index) / DENSE).unlink(),
    "passages-truncated": lambda index: _truncate(current_version(index) / PASSAGES),
    "passages-garbage-inside": _garbage_inside_passages,
    "sentence-vectors-truncated": lambda index: _truncate(current_version(index) / SENTENCES),
    "sentence-vectors-altered": lambda index: _flip_middle_bytes(current_version(index) / SENTENCES),
    "manifest-not-json": lambda index: (current_version(index) / MANIFEST).write_text("{oops"),
    "manifest-other-model": lambda index: _rewrite_manifest(index, model="another-model"),
    "manifest-older-format": lambda index: _rewrite_manifest(index, format_version=1),
    "manifest-newer-format": lambda index: _rewrite_manifest(index, format_version=999),
    "current-names-nothing": lambda index: (index / CURRENT).write_text("v-gone\n"),
    "current-points-outside": lambda index: (index / CURRENT).write_text("../../etc\n"),
}


FILE_DAMAGE = [name for name in DAMAGE if not name.startswith(("manifest-", "current-"))]


@pytest.mark.parametrize("damage", FILE_DAMAGE)
def test_index_status_finds_a_damaged_index_file_as_ask_does(built: Settings, damage: str) -> None:
    DAMAGE[damage](built.index)
    status = run(built, "index", "status")
    assert status.exit_code == 3, status.output
    asked = run(built, "ask", "What does Palantir run on?")
    assert one_error_line(status.stderr) == one_error_line(asked.stderr)
    assert "index build" in one_error_line(status.stderr)


def test_index_status_checks_the_files_without_importing_torch_or_faiss(built: Settings) -> None:
    DAMAGE["sentence-vectors-altered"](built.index)
    code = (
        "import sys\nfrom bot.cli import main\ntry:\n    main()\nexcept SystemExit as exc:\n"
        "    print(exc.code, sorted({'torch', 'faiss', 'sentence_transformers'} & set(sys.modules)))"
    )
    args = [
        "--corpus",
        str(built.corpus),
        "--index",
        str(built.index),
        "--model",
        built.model,
        "index",
        "status",
    ]
    result = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.stdout.strip() == "3 []", result.stdout + result.stderr
    assert "is damaged" in one_error_line(result.stderr)


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_index_is_one_line_exit_3_untouched_and_rebuilt_by_index_build(
    built: Settings, damage: str
) -> None:
    DAMAGE[damage](built.index)
    corpus_before, index_before = tree(built.corpus), tree(built.index)
    for question in ["What does Palantir run on?", "Who wrote to Jeff Bezos?", "How many employees signed?"]:
        result = run(built, "ask", question)
        assert result.exit_code == 3, result.output
        assert "index build" in one_error_line(result.stderr)
    assert (tree(built.corpus), tree(built.index)) == (corpus_before, index_before)
    rebuilt = run(built, "index", "build")
    assert rebuilt.exit_code == 0, rebuilt.output
    assert store.load(built.index, FAKE_MODEL).manifest.passages > 0
    assert run(built, "ask", "What does Palantir run on?").exit_code == 0
