"""docs/RELIABILITY.md is the catalogue of bad input, faults and threats: every row names a test, and
every test it names exists (so renaming or deleting one cannot quietly empty a row)."""

from __future__ import annotations

import ast
import re

from tests.conftest import ROOT

CATALOGUE = ROOT / "docs" / "RELIABILITY.md"
REFERENCE = re.compile(r"`(test_\w+\.py)::(test_\w+)(\[[^`]*\])?`")


def _rows() -> list[str]:
    """The table rows of the catalogue (the load figures after `## Load` are measurements, not rows)."""
    rows = []
    catalogue = CATALOGUE.read_text(encoding="utf-8").split("\n## Load", 1)[0]
    for line in catalogue.splitlines():
        if line.startswith("|") and not re.fullmatch(r"\|[-| ]+\|", line):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if cells[0] not in ("input", "input or fault", "damage", "fault", "threat"):
                rows.append(line)
    return rows


def _test_functions(file_name: str) -> set[str]:
    tree = ast.parse((ROOT / "tests" / file_name).read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def test_every_row_names_a_test() -> None:
    rows = _rows()
    assert len(rows) > 80
    unproven = [row for row in rows if not REFERENCE.search(row) and not re.search(r"`\[[\w-]+\]`", row)]
    assert unproven == []


def test_every_named_test_exists() -> None:
    references = REFERENCE.findall(CATALOGUE.read_text(encoding="utf-8"))
    assert len(references) > 60
    missing = [
        f"{file_name}::{name}"
        for file_name, name, _ in references
        if not (ROOT / "tests" / file_name).is_file() or name not in _test_functions(file_name)
    ]
    assert missing == []


def test_the_load_figures_are_filled_in() -> None:
    text = CATALOGUE.read_text(encoding="utf-8")
    assert "PLACEHOLDER" not in text
    assert "answers/s" in text and "p95" in text and "duplicated" in text
