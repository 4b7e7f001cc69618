"""The index: build, incremental update by content hash, manifest checks, atomic swaps."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bot import store
from bot.config import Settings
from bot.errors import IndexCorruptError, IndexMismatchError, IndexMissingError
from bot.indexer import update_index
from bot.manifest import (
    APPROXIMATE,
    CURRENT,
    DENSE,
    EXACT,
    FORMAT_VERSION,
    MANIFEST,
    PASSAGES,
    SENTENCES,
    current_version,
    freshness,
    read_manifest,
)
from bot.tables import PassageTable, VectorFile
from tests.fakes import FAKE_MODEL, HashEmbedder

NEW_ARTICLE = """---
title: A new article
outlet: Example News
---
Employees of a large retailer wrote a second letter about cloud contracts with immigration agencies.
The second letter asked the company to publish every contract it holds with police departments.
"""


def _update(settings: Settings, embedder: HashEmbedder, full: bool = False):  # type: ignore[no-untyped-def]
    return update_index(
        settings.corpus, settings.index, embedder, settings.chunk_tokens, settings.chunk_overlap,
        settings.exact_search_limit, full=full,
    )  # fmt: skip


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_build_writes_a_self_describing_index(built: Settings) -> None:
    manifest = read_manifest(built.index)
    assert manifest.format_version == FORMAT_VERSION
    assert manifest.model == FAKE_MODEL
    assert manifest.dimension == 64
    assert len(manifest.articles) == 5
    assert all(len(record.hash) == 64 for record in manifest.articles.values())
    index = store.load(built.index, FAKE_MODEL)
    assert len(index.passages) == manifest.passages == index.dense.ntotal
    assert not freshness(built.corpus, manifest).stale


def test_no_pickle_in_the_index(built: Settings) -> None:
    import numpy as np

    files = [p for p in built.index.rglob("*") if p.is_file()]
    assert files
    for path in files:
        assert not path.read_bytes().startswith(b"\x80"), f"{path.name} looks like a pickle"
        if path.suffix == ".npy":
            assert not np.load(path, allow_pickle=False).dtype.hasobject


def test_update_embeds_only_the_new_article(built: Settings, fake_embedder: HashEmbedder) -> None:
    (built.corpus / "new-article.md").write_text(NEW_ARTICLE, encoding="utf-8")
    assert freshness(built.corpus, read_manifest(built.index)).added == ("new-article",)
    fake_embedder.encoded.clear()
    report = _update(built, fake_embedder)
    assert report.added == ("new-article",)
    new_passages = [p for p in store.load(built.index, FAKE_MODEL).passages if p.article_id == "new-article"]
    new_texts = {p.text for p in new_passages} | {s for p in new_passages for s in p.sentence_texts()}
    assert set(fake_embedder.encoded) == new_texts
    assert report.embedded == len(new_texts)


def test_update_with_nothing_changed_embeds_nothing(built: Settings, fake_embedder: HashEmbedder) -> None:
    fake_embedder.encoded.clear()
    report = _update(built, fake_embedder)
    assert fake_embedder.encoded == []
    assert report.embedded == 0 and report.articles == 5


def test_update_drops_removed_articles(built: Settings, fake_embedder: HashEmbedder) -> None:
    removed = sorted(built.corpus.glob("*.md"))[0]
    removed.unlink()
    report = _update(built, fake_embedder)
    assert report.removed == (removed.stem,)
    index = store.load(built.index, FAKE_MODEL)
    assert removed.stem not in index.manifest.articles
    assert all(p.article_id != removed.stem for p in index.passages)


def test_full_build_re_embeds_everything(built: Settings, fake_embedder: HashEmbedder) -> None:
    fake_embedder.encoded.clear()
    report = _update(built, fake_embedder, full=True)
    assert report.embedded > 0 and len(fake_embedder.encoded) == report.embedded


def test_missing_index(settings: Settings) -> None:
    with pytest.raises(IndexMissingError, match="index build"):
        store.load(settings.index, FAKE_MODEL)


def test_model_mismatch_names_both_models(built: Settings) -> None:
    with pytest.raises(IndexMismatchError, match="other-model"):
        store.load(built.index, "other-model")


def test_format_version_mismatch(built: Settings) -> None:
    manifest_path = current_version(built.index) / MANIFEST
    data = json.loads(manifest_path.read_text())
    data["format_version"] = 999
    manifest_path.write_text(json.dumps(data))
    with pytest.raises(IndexMismatchError, match="format version 999"):
        store.load(built.index, FAKE_MODEL)


@pytest.mark.parametrize("name", [DENSE, PASSAGES, SENTENCES])
def test_truncated_file_is_reported_as_corrupt(built: Settings, name: str) -> None:
    path = current_version(built.index) / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(IndexCorruptError, match="index build"):
        store.load(built.index, FAKE_MODEL)


def test_garbage_of_the_right_size_is_reported_as_corrupt(built: Settings) -> None:
    path = current_version(built.index) / DENSE
    path.write_bytes(b"\xff" * path.stat().st_size)
    with pytest.raises(IndexCorruptError):
        store.load(built.index, FAKE_MODEL)


def test_corrupt_manifest_and_pointer(built: Settings) -> None:
    (current_version(built.index) / MANIFEST).write_text("{not json")
    with pytest.raises(IndexCorruptError, match="manifest"):
        store.load(built.index, FAKE_MODEL)
    (built.index / CURRENT).write_text("v-does-not-exist\n")
    with pytest.raises(IndexCorruptError, match="missing version"):
        store.load(built.index, FAKE_MODEL)


def test_a_crash_mid_build_leaves_the_previous_index(
    built: Settings, fake_embedder: HashEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _tree(built.index)
    (built.corpus / "new-article.md").write_text(NEW_ARTICLE, encoding="utf-8")

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # what a kill looks like from inside: nothing after this line runs

    monkeypatch.setattr(store, "_swap_current", crash)
    with pytest.raises(KeyboardInterrupt):
        _update(built, fake_embedder)
    after = {k: v for k, v in _tree(built.index).items() if k in before}
    assert after == before
    index = store.load(built.index, FAKE_MODEL)
    assert "new-article" not in index.manifest.articles
    monkeypatch.undo()
    _update(built, fake_embedder)  # the next run cleans up and succeeds
    assert "new-article" in store.load(built.index, FAKE_MODEL).manifest.articles
    versions = [p for p in built.index.iterdir() if p.name.startswith(("v-", ".build-"))]
    assert len(versions) == 1


def test_unreadable_article_is_skipped_and_does_not_make_the_index_stale(
    built: Settings, fake_embedder: HashEmbedder
) -> None:
    (built.corpus / "broken.txt").write_bytes(b"\xff\xfe not utf-8 \xff")
    report = _update(built, fake_embedder)
    assert report.skipped == ("broken",)
    assert not freshness(built.corpus, read_manifest(built.index)).stale


def test_index_folder_copied_elsewhere_still_loads(built: Settings, tmp_path: Path) -> None:
    copy = tmp_path / "copied-index"
    shutil.copytree(built.index, copy)
    assert store.load(copy, FAKE_MODEL).manifest.passages > 0


def test_update_reads_only_new_articles_and_keeps_faiss_ids(
    built: Settings, fake_embedder: HashEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    import bot.chunk

    before = store.load(built.index, FAKE_MODEL)
    old_ids = dict(zip([p.id for p in before.passages], before.ids.tolist(), strict=True))
    removed = sorted(built.corpus.glob("*.md"))[0].stem
    (built.corpus / f"{removed}.md").unlink()
    (built.corpus / "new-article.md").write_text(NEW_ARTICLE, encoding="utf-8")
    chunked: list[str] = []
    real_chunk = bot.chunk.chunk
    monkeypatch.setattr(
        bot.chunk, "chunk", lambda article, *a: chunked.append(article.id) or real_chunk(article, *a)
    )

    _update(built, fake_embedder)

    assert chunked == ["new-article"]  # unchanged articles are carried over, not re-read
    after = store.load(built.index, FAKE_MODEL)
    new_ids = dict(zip([p.id for p in after.passages], after.ids.tolist(), strict=True))
    kept = {pid for pid in old_ids if not pid.startswith(removed + "@")}
    assert {pid: new_ids[pid] for pid in kept} == {pid: old_ids[pid] for pid in kept}
    added = [i for pid, i in new_ids.items() if pid.startswith("new-article@")]
    assert added and min(added) > max(old_ids.values())
    assert not any(pid.startswith(removed + "@") for pid in new_ids)
    # Every kept passage still finds its own vector and its sentences' vectors.
    for row, passage in enumerate(after.passages):
        vector = fake_embedder.encode([passage.text])[0]
        assert after.dense_scores(vector, np.array([row]))[0] == pytest.approx(1.0, abs=2e-3)
        sentence_rows = list(after.sentence_rows[row])
        expected = fake_embedder.encode(passage.sentence_texts())
        assert np.allclose(after.sentence_vectors[sentence_rows], expected, atol=2e-3)


def test_changed_chunking_rechunks_but_reuses_vectors(built: Settings, fake_embedder: HashEmbedder) -> None:
    before = store.load(built.index, FAKE_MODEL)
    known = {p.text for p in before.passages} | {s for p in before.passages for s in p.sentence_texts()}
    fake_embedder.encoded.clear()
    report = _update(built.model_copy(update={"chunk_tokens": 60}), fake_embedder)
    index = store.load(built.index, FAKE_MODEL)
    assert index.manifest.chunk_tokens == 60
    # Re-chunked passages are new texts; every text the old index held keeps its vector.
    assert report.embedded == len(fake_embedder.encoded) > 0
    assert not set(fake_embedder.encoded) & known


def test_passages_load_lazily_and_match_the_chunks(built: Settings) -> None:
    index = store.load(built.index, FAKE_MODEL)
    assert isinstance(index.passages, PassageTable)
    listed = list(index.passages)
    assert len(listed) == index.manifest.passages
    assert index.passages[-1] == listed[-1] and index.passages[1:3] == listed[1:3]
    with pytest.raises(IndexError):
        index.passages[len(listed)]
    for passage in listed[:3]:
        assert passage.text[:20] in (built.corpus / f"{passage.article_id}.md").read_text(encoding="utf-8")


def _brute_force(index: store.Index, query, k: int):  # type: ignore[no-untyped-def]
    import numpy as np

    vectors = index.passage_vectors()
    return np.argsort(-(vectors @ query), kind="stable")[:k]


@pytest.mark.parametrize("limit", [10_000, 10])
def test_dense_search_matches_brute_force(built: Settings, fake_embedder: HashEmbedder, limit: int) -> None:
    """Exact (float16) search below the limit, IVF above it: the same top passages here."""
    settings = built.model_copy(update={"exact_search_limit": limit})
    _update(settings, fake_embedder, full=True)
    index = store.load(built.index, FAKE_MODEL)
    assert index.manifest.search == (EXACT if limit > index.manifest.passages else APPROXIMATE)
    for question in ["How many employees signed the letter?", "Palantir runs on AWS", "ICE deportations"]:
        query = fake_embedder.encode([question])[0]
        rows, scores = index.search_dense(query, 5)
        assert set(rows.tolist()) == set(_brute_force(index, query, 5).tolist())
        assert scores == pytest.approx(index.dense_scores(query, rows), abs=1e-4)


def test_crossing_the_exact_limit_switches_the_dense_index(
    built: Settings, fake_embedder: HashEmbedder
) -> None:
    passages = read_manifest(built.index).passages
    settings = built.model_copy(update={"exact_search_limit": passages})
    (built.corpus / "new-article.md").write_text(NEW_ARTICLE, encoding="utf-8")
    fake_embedder.encoded.clear()
    _update(settings, fake_embedder)
    manifest = read_manifest(built.index)
    assert manifest.search == APPROXIMATE and manifest.passages > passages
    index = store.load(built.index, FAKE_MODEL)
    new = [p for p in index.passages if p.article_id == "new-article"]
    # The IVF index is built from the stored vectors: only the new article's text was embedded.
    assert set(fake_embedder.encoded) <= {p.text for p in new} | {s for p in new for s in p.sentence_texts()}
    query = fake_embedder.encode(["second letter about cloud contracts"])[0]
    rows, _ = index.search_dense(query, 3)
    assert index.passages[int(rows[0])].article_id == "new-article"


def test_reading_the_manifest_does_not_import_numpy() -> None:
    """`index status` and `sources` only read the manifest and hash the corpus: no numpy, no BM25."""
    import subprocess
    import sys

    code = (
        "import sys, bot.manifest, bot.status; print(sorted({'numpy', 'bm25s', 'faiss'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_vector_file_reads_what_numpy_loads(tmp_path: Path) -> None:
    # The sentence vectors are read row by row with pread; any way of indexing must give what the
    # whole array would.
    array = np.arange(50 * 3, dtype=np.float16).reshape(50, 3)
    np.save(tmp_path / "v.npy", array)
    vectors = VectorFile(tmp_path / "v.npy")
    assert vectors.shape == (50, 3) and len(vectors) == 50 and vectors.dtype == np.float16
    for key in [
        7,
        -1,
        slice(3, 9),
        slice(0, 50, 7),
        slice(45, 99),
        [4, 5, 6, 30, 5, 1],
        np.array([], dtype=int),
    ]:
        assert np.array_equal(vectors[key], array[key]), key
    for bad in [50, -51, [3, 50]]:
        with pytest.raises(IndexError):
            vectors[bad]
