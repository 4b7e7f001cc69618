"""Shared fixtures: a temp copy of the shipped corpus, indexed with the fake or the real model; and
the hook that marks `slow` every test using the real model, a subprocess, the network stack or a
fresh virtual environment (`python -m pytest -m "not slow"` is the fast lane)."""

from __future__ import annotations

import dis
import functools
import inspect
import shutil
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.config import Settings
from bot.indexer import update_from_settings
from tests.fakes import FAKE_MODEL, HashEmbedder, install_fake_embedder

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"
SHARED = ROOT.parent / "shared"
DEV_QUESTIONS = SHARED / "eval" / "dev-questions.jsonl"


def copy_corpus(target: Path) -> Path:
    """The shipped articles (not the README) copied into `target`."""
    target.mkdir(parents=True, exist_ok=True)
    for path in CORPUS.glob("*.md"):
        if path.name != "README.md":
            shutil.copy(path, target / path.name)
    return target


@pytest.fixture
def fake_embedder() -> HashEmbedder:
    return install_fake_embedder()


@pytest.fixture
def settings(tmp_path: Path, fake_embedder: HashEmbedder) -> Settings:
    """Settings for a temp corpus copy and index folder, with the fake model (index not built)."""
    return Settings(corpus=copy_corpus(tmp_path / "corpus"), index=tmp_path / "index", model=FAKE_MODEL)


@pytest.fixture
def built(settings: Settings, fake_embedder: HashEmbedder) -> Settings:
    """`settings` with the index built by the fake model."""
    update_from_settings(settings, fake_embedder)
    return settings


@pytest.fixture(scope="session")
def real_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A temp corpus copy indexed once per test session with the real model (all-MiniLM-L6-v2)."""
    root = tmp_path_factory.mktemp("real")
    settings = Settings(corpus=copy_corpus(root / "corpus"), index=root / "index")
    from bot.embed import load_embedder

    embedder = load_embedder(settings.model)
    update_from_settings(settings, embedder)
    return settings


@pytest.fixture(scope="session")
def real_engine(real_settings: Settings):  # type: ignore[no-untyped-def]
    """The engine over the real-model index, shared by the tests of a session."""
    from bot.startup import open_engine

    return open_engine(real_settings)


# --- the fast lane ------------------------------------------------------------------------------

# Fixtures that load the real model (all-MiniLM-L6-v2): seconds to load, and every answer costs more.
_REAL_MODEL_FIXTURES = {"real_settings", "real_engine"}
# Modules whose use makes a test slow: another process, real sockets (a server, the fake Bot API,
# a browser), a fresh virtual environment.
_SLOW_MODULES = {
    "subprocess": "a subprocess",
    "multiprocessing": "a subprocess",
    "socket": "the network stack",
    "http": "the network stack",
    "aiohttp": "the network stack",
    "uvicorn": "the network stack",
    "selenium": "the network stack",
    "venv": "a fresh virtual environment",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark `slow` each test that uses the real model, a subprocess, the network stack or a fresh
    venv, found from its fixtures and markers and from the code it runs: the test function, its
    fixtures, and the helpers of tests/ and benchmarks/ they call (followed through the names they use)."""
    for item in items:
        reason = _slow_reason(item)
        if reason:
            item.add_marker(pytest.mark.slow(reason=reason))


def _slow_reason(item: pytest.Item) -> str | None:
    if not isinstance(item, pytest.Function):
        return None
    fixtures = set(item.fixturenames)
    definitions = item._fixtureinfo.name2fixturedefs  # pytest has no public way to the fixture functions
    code = [item.function, *(d.func for name in fixtures for d in definitions.get(name, ()))]
    return slow_reason(code, fixtures, marked_model=item.get_closest_marker("model") is not None)


def slow_reason(code: list[object], fixtures: set[str], marked_model: bool = False) -> str | None:
    """Why a test is slow, from the functions it runs (the test's and its fixtures') and the names of
    its fixtures; None when it is not."""
    if marked_model or fixtures & _REAL_MODEL_FIXTURES:
        return "the real model"
    for function in code:
        modules, names = _uses(function)
        if modules:
            return min(modules)
        if names & _LOADS_A_MODEL and "fake_embedder" not in fixtures:
            return "the real model"  # a model loaded without the fake in place is the real one
    return None


# Engine and embedder loaders: called without the fake embedder installed, they load the real model.
_LOADS_A_MODEL = {"open_engine", "load_engine", "load_embedder"}


@functools.cache
def _uses(root: object) -> tuple[frozenset[str], frozenset[str]]:
    """The slow modules (as `_SLOW_MODULES` names their use) and the global names that a function
    or class of ours uses, itself or through the other functions and classes of ours it names."""
    modules: set[str] = set()
    names: set[str] = set()
    todo, seen = [root], {id(root)}
    while todo:
        for name, used in _referenced(todo.pop()):
            names.add(name)
            reason = _slow_module(used)
            if reason:
                modules.add(reason)
            elif _ours(used) and id(used) not in seen:
                seen.add(id(used))
                todo.append(used)
    return frozenset(modules), frozenset(names)


def _referenced(thing: object) -> Iterator[tuple[str, object]]:
    """The names a function (its nested functions included) or a class's methods use, with the
    global objects or imported modules they stand for (None for other names)."""
    if isinstance(thing, type):
        for base in thing.__mro__:
            if _ours(base):
                for member in vars(base).values():
                    function = getattr(member, "__func__", getattr(member, "fget", member))
                    if inspect.isfunction(function):
                        yield from _referenced(function)
        return
    function = inspect.unwrap(thing) if callable(thing) else thing
    if not inspect.isfunction(function):
        return
    namespace = function.__globals__
    codes = [function.__code__]
    while codes:
        code = codes.pop()
        codes += [c for c in code.co_consts if isinstance(c, types.CodeType)]
        for name in code.co_names:
            yield name, namespace.get(name)
        module = None
        for instruction in dis.get_instructions(code):
            if instruction.opname == "IMPORT_NAME" and instruction.argval in sys.modules:
                yield instruction.argval, sys.modules[instruction.argval]  # `import subprocess` inside
            elif module is not None and instruction.opname in ("LOAD_ATTR", "LOAD_METHOD"):
                yield instruction.argval, getattr(module, instruction.argval, None)  # `measure.run_process`
            used = namespace.get(instruction.argval) if instruction.opname == "LOAD_GLOBAL" else None
            module = used if isinstance(used, types.ModuleType) and _ours_module(used) else None


def _slow_module(thing: object) -> str | None:
    module = thing.__name__ if isinstance(thing, types.ModuleType) else getattr(thing, "__module__", None)
    return _SLOW_MODULES.get(str(module or "").split(".")[0])


def _ours(thing: object) -> bool:
    """A function or class of tests/ or benchmarks/, whose helpers start processes and servers. The
    bot's own code is not followed: the CLI names everything, the server and the Telegram bot too."""
    if not (inspect.isfunction(thing) or isinstance(thing, type)):
        return False
    return str(getattr(thing, "__module__", "")).split(".")[0] in _OURS


def _ours_module(module: types.ModuleType) -> bool:
    return module.__name__.split(".")[0] in _OURS


_OURS = ("tests", "benchmarks")
