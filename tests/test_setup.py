"""README's two set-up commands and .ci/run: quiet, CPU torch on any machine, no pip warnings.

The torch step is run for real with pip, against stand-ins for PyPI and the PyTorch index served on
127.0.0.1 (no other host is contacted): an ordinary machine, where both answer, and a machine whose
only network is the package index, where download.pytorch.org cannot be reached.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

PYTORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def readme_setup_commands() -> list[str]:
    """The shell blocks of README's set-up section, in order."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Set-up on a fresh machine", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)\n```", section, re.DOTALL)


def steps(command: str) -> list[list[str]]:
    """A `a && b && c` command line as its steps, each split into words."""
    return [shlex.split(step) for step in command.split("&&")]


def pip_installs(words_of_steps: list[list[str]]) -> list[list[str]]:
    return [w for w in words_of_steps if "pip" in " ".join(w[:3]) and "install" in w]


def ci_pip_installs() -> list[list[str]]:
    # A line ending in a backslash goes on in the next, as the shell reads it.
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").replace("\\\n", " ").splitlines()
    return pip_installs([shlex.split(line) for line in lines if line.strip() and not line.startswith("#")])


def test_readme_has_two_set_up_commands_the_second_being_ci() -> None:
    first, second = readme_setup_commands()
    assert "protest-bot ask" in first
    assert second.strip() == "bash .ci/run"


def test_every_pip_install_of_the_set_up_is_quiet() -> None:
    # Without -q the first command prints ~200 lines of progress bars above the answer.
    installs = pip_installs(steps(readme_setup_commands()[0])) + ci_pip_installs()
    assert len(installs) >= 4
    for words in installs:
        assert "-q" in words or "--quiet" in words, f"not quiet: {' '.join(words)}"


def test_the_project_builds_without_warnings() -> None:
    # Seen on stderr despite -q: setuptools >= 77 warns three times (15 lines each) about a license
    # given as a table, and an editable install adds a 10-line warning about folders.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert isinstance(pyproject["project"]["license"], str)  # an SPDX expression
    (project_install,) = [w for w in pip_installs(steps(readme_setup_commands()[0])) if w[-1] == "."]
    assert "-e" not in project_install and "--editable" not in project_install


def test_pip_is_upgraded_before_anything_is_installed() -> None:
    # The pip a venv of Python 3.11 starts with (23.2) compares extras without normalizing their names,
    # so justext's `lxml[html_clean]` meets lxml's `html-clean` and pip warns on every install.
    for installs in (pip_installs(steps(readme_setup_commands()[0])), ci_pip_installs()):
        assert installs[0][-2:] == ["--upgrade", "pip"], installs[0]


def test_the_installed_pip_has_nothing_to_warn_about_extras() -> None:
    # The very requirement justext makes, resolved offline against what is installed.
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "lxml[html_clean]"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "does not provide the extra" not in result.stderr, result.stderr


# --- the torch step against loopback stand-ins ---------------------------------------------------


def fake_wheel(folder: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> Path:
    """A tiny wheel, for pip to choose (it is never installed)."""
    info = f"{name}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    files = {
        f"{name}/__init__.py": b"",
        f"{info}/METADATA": metadata.encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(
        f"{path},sha256={hashlib.sha256(data).hexdigest()},{len(data)}\n" for path, data in files.items()
    )
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


def simple_index(root: Path, *wheels: Path) -> None:
    """A PEP 503 index of the projects of `wheels`."""
    for wheel in wheels:
        project = root / "simple" / wheel.name.split("-")[0]
        project.mkdir(parents=True)
        (project / wheel.name).write_bytes(wheel.read_bytes())
        (project / "index.html").write_text(f'<a href="{wheel.name}">{wheel.name}</a>\n', encoding="utf-8")


@pytest.fixture
def serve() -> Iterator:  # type: ignore[type-arg]
    """Serve folders over HTTP on 127.0.0.1; returns each one's index URL."""
    servers = []

    def start(folder: Path) -> str:
        handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(folder), **k)  # noqa: E731
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.RequestHandlerClass.log_message = lambda *a: None  # type: ignore[method-assign]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/simple"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def readme_torch_step() -> list[str]:
    """The README's torch install, pip called as this interpreter's."""
    (words,) = [w for w in pip_installs(steps(readme_setup_commands()[0])) if "torch==2.13.0" in w]
    return [sys.executable, "-m", "pip", *words[1:]]


def choose_torch(tmp_path: Path, pypi: str, pytorch: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run the README's torch step with PyPI and download.pytorch.org replaced; the version pip picks."""
    words = readme_torch_step()
    words = [pytorch if w == PYTORCH_CPU_INDEX else w for w in words]
    report = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull  # this machine's pip.conf points at a local wheel
    result = subprocess.run(
        [*words, "--index-url", pypi, "--ignore-installed", "--dry-run", "--report", report],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    chosen = json.loads(report.read_text())["install"][0]["metadata"]["version"] if report.exists() else ""
    return result, chosen


def test_readme_torch_step_gets_the_cpu_build_where_pypi_has_the_cuda_one(tmp_path: Path, serve) -> None:  # type: ignore[no-untyped-def]
    # On PyPI, torch 2.13.0 for Linux is the CUDA build; the PyTorch CPU index has 2.13.0+cpu.
    pypi = serve(tmp_path / "pypi")
    simple_index(tmp_path / "pypi", fake_wheel(tmp_path / "w", "torch", "2.13.0"))
    pytorch = serve(tmp_path / "pytorch")
    simple_index(tmp_path / "pytorch", fake_wheel(tmp_path / "cpu", "torch", "2.13.0+cpu"))
    result, chosen = choose_torch(tmp_path, pypi, pytorch)
    assert result.returncode == 0, result.stderr
    assert chosen == "2.13.0+cpu"


def test_readme_torch_step_still_installs_when_the_pytorch_index_is_unreachable(
    tmp_path: Path, serve
) -> None:  # type: ignore[no-untyped-def]
    # A machine whose only network is the package index: pip warns about the other host and goes on.
    # torch's own dependencies come with the project's (next line of the README): the unreachable
    # host is asked about torch alone, not once more for each of them (~8 s and 5 warnings each).
    pypi = serve(tmp_path / "pypi")
    torch = fake_wheel(tmp_path / "w", "torch", "2.13.0+cpu", requires=("filelock",))
    simple_index(tmp_path / "pypi", torch, fake_wheel(tmp_path / "w", "filelock", "3.20.0"))
    result, chosen = choose_torch(tmp_path, pypi, f"http://127.0.0.1:{closed_port()}/simple")
    assert result.returncode == 0, result.stderr
    assert chosen == "2.13.0+cpu"
    assert "/simple/torch/" in result.stderr  # pip did try the PyTorch stand-in, warned, went on
    assert "/simple/filelock/" not in result.stderr
