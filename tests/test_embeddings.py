"""Embeddings in the engine worker, beside the chat model: a tiny random
BERT with a real WordPiece vocabulary, its pooling from the GGUF, vectors of
length 1, equal to llama.cpp's own embedding of the same text."""

from __future__ import annotations

import ctypes
import os
import signal
import time
from pathlib import Path

import llama_cpp
import numpy as np
import pytest

from localchat.core.engine.client import Engine
from localchat.core.errors import EngineError, ModelFileError
from localchat.core.params import GenerationSettings
from localchat.testing.tiny_models import write_bert_gguf

TEXTS = [
    "The lighthouse keeper wrote in his diary every night.",
    "Kimchi ferments for weeks in clay jars buried in the ground.",
    "İstanbul'dan kalkan vapur Kadıköy'e yarım saatte varır.",
    "서울에서 부산까지 기차로 세 시간이 걸린다.",
]


@pytest.fixture(scope="module", params=["mean", "cls"])
def bert(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bert") / f"bert-{request.param}.gguf"
    return write_bert_gguf(path, pooling=request.param)


def reference(model: Path, text: str) -> np.ndarray:
    """llama.cpp's own embedding (llama-cpp-python, in this process), normalised."""
    llama_cpp.llama_log_set(llama_cpp._logger.llama_log_callback, ctypes.c_void_p(0))
    llm = llama_cpp.Llama(
        str(model), embedding=True, n_ctx=512, n_batch=512, n_ubatch=512, verbose=False
    )
    try:
        return np.asarray(llm.embed(text, normalize=True), dtype=np.float32)
    finally:
        llm.close()


def test_vectors_are_llama_cpps_own_pooled_and_normalised(bert: Path, tiny_model: Path) -> None:
    with Engine() as engine:
        engine.load(tiny_model, GenerationSettings())  # the chat model stays loaded
        info = engine.load_embedder(bert)
        assert info.dim == 32 and info.pooling == bert.stem.split("-")[1]
        vectors = engine.embed(TEXTS)
        assert vectors.shape == (len(TEXTS), 32) and vectors.dtype == np.float32
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        for text, vector in zip(TEXTS, vectors, strict=True):
            assert np.allclose(vector, reference(bert, text), atol=1e-4)
        # One text or many, the same vector (the batching packs several).
        assert np.allclose(engine.embed(TEXTS[1:2])[0], vectors[1], atol=1e-5)
        # Different texts, different vectors; the chat model still answers.
        assert float(vectors[0] @ vectors[1]) < 0.999
        assert engine.chat([{"role": "user", "content": "hi"}],
                           GenerationSettings(max_tokens=3)).text() is not None  # fmt: skip
        assert engine.embed([]).shape == (0, 32)


def test_the_embedder_comes_back_after_a_crash_and_bad_files_are_one_line(
    bert: Path, tmp_path: Path, tiny_model: Path
) -> None:
    with Engine() as engine:
        engine.load_embedder(bert, n_ctx=64)
        before = engine.embed(TEXTS[:1])
        pid = engine.worker_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while engine.worker_pid == pid and _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        after = engine.embed(TEXTS[:1])  # a fresh worker, the embedder loaded again
        assert engine.worker_pid != pid
        assert np.allclose(before, after, atol=1e-5)
        # A text longer than the context is cut, not an error.
        assert engine.embed(["word " * 500]).shape == (1, 32)
        with pytest.raises(ModelFileError):
            engine.load_embedder(tmp_path / "missing.gguf")
    with Engine() as engine, pytest.raises(EngineError, match="no embedding model"):
        engine.load(tiny_model)
        engine.embed(["x"])


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
