"""Security rows of docs/RELIABILITY.md that are not about Telegram: nothing from a user or an article
reaches a shell, eval, pickle, or a path outside corpus/ and index/; dependencies in compatible ranges.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot import store
from bot.cli import app
from bot.config import Settings
from bot.manifest import read_manifest
from tests.conftest import ROOT
from tests.fakes import FAKE_MODEL

runner = CliRunner()
BODY = "Employees of the retailer wrote a second letter about {word} and cloud contracts with the agency.\n"


def run(settings: Settings, *args: str):  # type: ignore[no-untyped-def]
    base = ["--corpus", str(settings.corpus), "--index", str(settings.index), "--model", settings.model]
    return runner.invoke(app, [*base, *args])


def files_under(folder: Path, *, leaving_out: tuple[Path, ...] = ()) -> set[Path]:
    return {
        p
        for p in folder.rglob("*")
        if not any(p == d or d in p.parents for d in leaving_out) and not p.is_dir()
    }


# --- no shell, eval or pickle -------------------------------------------------------------------

FORBIDDEN_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "marshal", "shelve", "subprocess"}
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__", "breakpoint"}
FORBIDDEN_ATTRIBUTES = {
    ("os", "system"), ("os", "popen"), ("os", "execv"), ("os", "execvp"), ("os", "spawnv"),
    ("yaml", "load"), ("yaml", "unsafe_load"), ("yaml", "full_load"), ("yaml", "load_all"),
    ("torch", "load"), ("importlib", "import_module"),
}  # fmt: skip


def _offences(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        where = f"{path.name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            found += [f"{where} imports {n}" for n in names if n.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in FORBIDDEN_CALLS:
                found.append(f"{where} calls {func.id}()")
            named = isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
            if named and (func.value.id, func.attr) in FORBIDDEN_ATTRIBUTES:  # type: ignore[union-attr]
                found.append(f"{where} calls {func.value.id}.{func.attr}()")  # type: ignore[union-attr]
            for keyword in node.keywords:
                risky = keyword.arg in {"shell", "allow_pickle", "trust_remote_code"}
                if risky and isinstance(keyword.value, ast.Constant) and keyword.value.value is True:
                    found.append(f"{where} passes {keyword.arg}=True")
    return found


def test_no_shell_eval_or_pickle_in_the_bot() -> None:
    sources = sorted((ROOT / "bot").rglob("*.py"))
    assert len(sources) > 10
    offences = [offence for path in sources for offence in _offences(path)]
    assert offences == []


def test_the_scan_does_find_what_it_forbids(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import pickle\nimport yaml, os, numpy as np\nyaml.load(x)\neval('1')\nos.system('ls')\n"
        "np.load(p, allow_pickle=True)\n",
        encoding="utf-8",
    )
    assert len(_offences(sample)) == 5


# --- paths: nothing outside corpus/ -------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "$(touch PWNED).txt",
        "`touch PWNED`.txt",
        "a; touch PWNED.txt",
        "..txt",
        ".hidden.md",
        "-rf.txt",
        "name with spaces & ampersand.md",
        "ünïcødé-名前.md",
        "x" * 240 + ".txt",
    ],
)
def test_hostile_article_names_land_inside_the_corpus_and_run_nothing(
    built: Settings, tmp_path: Path, name: str
) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    article = incoming / name
    article.write_text(BODY.format(word=f"word{len(name)}"), encoding="utf-8")
    outside_before = files_under(tmp_path, leaving_out=(built.corpus, built.index))
    corpus_before = set(built.corpus.iterdir())
    result = run(built, "add", str(article))
    assert result.exit_code == 0, result.output
    (added,) = set(built.corpus.iterdir()) - corpus_before
    assert added.resolve().parent == built.corpus.resolve()
    assert re.fullmatch(r"[\w][\w.-]*\.(txt|md)", added.name), added.name
    assert not added.name.startswith(".") and added.stem.lower() != "readme", "it must be indexed, not hidden"
    assert files_under(tmp_path, leaving_out=(built.corpus, built.index)) == outside_before
    assert not list(tmp_path.rglob("PWNED")) and not (ROOT / "PWNED").exists()
    assert added.stem in read_manifest(built.index).articles


def test_an_article_given_as_dot_dot_path_is_copied_in_under_its_own_name(
    built: Settings, tmp_path: Path
) -> None:
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    (tmp_path / "x.md").write_text(BODY.format(word="dotdot"), encoding="utf-8")
    result = run(built, "add", str(deep / ".." / ".." / "x.md"))
    assert result.exit_code == 0, result.output
    assert (built.corpus / "x.md").is_file()
    assert "x" in read_manifest(built.index).articles


def test_symlinks_in_the_corpus_that_lead_outside_are_refused(
    built: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = tmp_path / "outside" / "secret.md"
    secret.parent.mkdir()
    secret.write_text(BODY.format(word="zanzibarsecret"), encoding="utf-8")
    (built.corpus / "evil.md").symlink_to(secret)
    (built.corpus / "dotdot.md").symlink_to(Path("..") / "outside" / "secret.md")
    (built.corpus / "passwd.md").symlink_to("/etc/passwd")
    (built.corpus / "folder.md").symlink_to(tmp_path / "outside", target_is_directory=True)
    result = run(built, "index", "update")
    assert result.exit_code == 0, result.output
    for name in ("evil", "dotdot", "passwd"):
        assert f"skipping {name}.md: it links outside the corpus folder" in caplog.text
    index = store.load(built.index, FAKE_MODEL)
    assert set(index.manifest.articles).isdisjoint({"evil", "dotdot", "passwd", "folder"})
    assert not any("zanzibarsecret" in p.text or "root:" in p.text for p in index.passages)


def test_a_symlinked_file_is_refused_by_add(built: Settings, tmp_path: Path) -> None:
    target = tmp_path / "real.md"
    target.write_text(BODY.format(word="linked"), encoding="utf-8")
    link = tmp_path / "link.md"
    link.symlink_to(target)
    result = run(built, "add", str(link))
    assert result.exit_code == 2 and "symbolic link" in result.stderr
    assert not (built.corpus / "link.md").exists()


# --- dependencies -------------------------------------------------------------------------------

_BOUNDS = re.compile(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(.*)$")


def _unbounded(requirements: list[str]) -> list[str]:
    """Requirements without both a lower and an upper bound (== and ~= count as both)."""
    loose = []
    for requirement in requirements:
        match = _BOUNDS.match(requirement.split(";")[0].strip())
        spec = match.group(3) if match else ""
        has_lower = any(op in spec for op in (">=", "==", "~=", ">"))
        has_upper = any(op in spec for op in ("<", "==", "~="))
        if not (has_lower and has_upper):
            loose.append(requirement)
    return loose


def _pyproject() -> dict:  # type: ignore[type-arg]
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_runtime_dependencies_are_pinned_to_compatible_ranges() -> None:
    dependencies = _pyproject()["project"]["dependencies"]
    assert dependencies
    assert _unbounded(dependencies) == []


def test_test_dependencies_are_pinned_to_compatible_ranges() -> None:
    assert _unbounded(_pyproject()["project"]["optional-dependencies"]["test"]) == []


def test_the_dependency_audit_is_documented() -> None:
    text = (ROOT / "docs" / "RELIABILITY.md").read_text(encoding="utf-8")
    assert "pip-audit" in text
