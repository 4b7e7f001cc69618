"""Shared fixtures: a temp copy of the shipped corpus, indexed with the fake or the real model."""

from __future__ import annotations

import shutil
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
    from bot.answer import open_engine

    return open_engine(real_settings)
