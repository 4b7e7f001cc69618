"""The real CLI (`bot.cli.app`) in a process of its own, with the fake embedder registered.

The fake model is registered in-process only, so tests that must run the CLI as a separate
process — to SIGKILL it mid-write, to hand it bytes that are not UTF-8, or to run it without root's
permission overrides — start this script instead of `python -m bot`:

    python tests/crash_runner.py --model test-hash-embedder index build

Importing it gives those tests `command()`, `obey_file_permissions()` and `permissions_bind()`.
"""

from __future__ import annotations

import ctypes
import functools
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# prctl(2): drop a capability from the bounding set, so the next exec does not get it.
_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE = 1
_CAP_DAC_READ_SEARCH = 2


def command(corpus: Path, index: Path, *args: str, model: str = "test-hash-embedder") -> list[str]:
    """The argv that runs the CLI with the fake model on a corpus and index folder."""
    base = ["--corpus", str(corpus), "--index", str(index), "--model", model]
    return [sys.executable, str(Path(__file__).resolve()), *base, *args]


def obey_file_permissions() -> None:
    """A `preexec_fn`: the child, even as root, is refused what the permission bits refuse.

    Root reads and writes anything through CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH; without them
    it is an ordinary owner, so `chmod 000` and `chmod a-w` mean what they say (tests here run as
    root, and CI may too). For an unprivileged user this does nothing.
    """
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


@functools.cache
def permissions_bind() -> bool:
    """Whether a child started with `obey_file_permissions` is really refused a `chmod 000` file."""
    with tempfile.TemporaryDirectory() as folder:
        closed = Path(folder) / "closed"
        closed.write_text("x")
        closed.chmod(0)
        try:
            probe = subprocess.run(
                ["cat", str(closed)], preexec_fn=obey_file_permissions, capture_output=True, timeout=30
            )
        except (OSError, subprocess.SubprocessError):
            return False
        return probe.returncode != 0


def main() -> None:
    from bot.cli import app
    from tests.fakes import install_fake_embedder

    install_fake_embedder()
    app(prog_name="protest-bot")


if __name__ == "__main__":
    main()
