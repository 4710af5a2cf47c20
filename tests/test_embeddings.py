"""Embeddings in the engine worker, beside the chat model: a tiny random
BERT with a real WordPiece vocabulary, its pooling from the GGUF, vectors of
length 1, equal to llama.cpp's own embedding of the same text."""

from __future__ import annotations

import ctypes
import os
import signal
from pathlib import Path

import llama_cpp
import numpy as np
import pytest

from localchat.core.engine.client import Engine
from localchat.core.errors import EngineCrashed, EngineError, LocalChatError, ModelFileError
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
        try:
            after = engine.embed(TEXTS[:1])  # a fresh worker, the embedder loaded again
        except EngineCrashed:  # the death seen by this call: the next one starts afresh
            after = engine.embed(TEXTS[:1])
        assert engine.worker_pid != pid
        assert np.allclose(before, after, atol=1e-5)
        # A text longer than the context is cut, not an error.
        assert engine.embed(["word " * 500]).shape == (1, 32)
        with pytest.raises(ModelFileError):
            engine.load_embedder(tmp_path / "missing.gguf")
    with Engine() as engine, pytest.raises(EngineError, match="no embedding model"):
        engine.load(tiny_model)
        engine.embed(["x"])


# -- a collection searched by meaning ------------------------------------------------


def test_a_collection_with_an_embedder_keeps_a_vector_per_passage(
    bert: Path, tmp_path: Path
) -> None:
    from localchat.core.documents import grounding, indexer, search
    from localchat.core.documents.embedding import Embedding, prefixes
    from localchat.core.documents.store import DocumentStore

    docs = tmp_path / "docs"
    docs.mkdir()
    corpus = Path(__file__).parent / "fixtures" / "documents"
    for name in ("en-ashford-bridge.md", "ko-temple.md"):
        (docs / name).write_text((corpus / name).read_text())
    store = DocumentStore(tmp_path / "documents.sqlite")
    with Engine() as engine:
        embedding = Embedding(engine, bert)
        assert prefixes(bert) == ("", "")
        indexer.add(store, "both", [docs], embedding=embedding)
        collection = store.collection("both")
        assert collection.embedder == bert.name
        assert store.unembedded(collection.id) == []
        ids, matrix = store.vectors([collection.id])
        assert len(ids) == collection.chunks and matrix.shape == (collection.chunks, 32)
        # Each stored vector is its passage's (float16: to 1e-3).
        passage = store.passages([int(ids[3])])[int(ids[3])]
        own = engine.embed([passage.text])[0]
        assert np.allclose(matrix[3], own, atol=2e-3)
        nearest = search.similar(store, [collection.id], own, 1)
        assert nearest[0][0] == passage.chunk_id and nearest[0][1] > 0.999
        # The vector ranking joins the search: a passage's own text finds it first.
        found = search.search(store, ["both"], passage.text, top=3, embedding=embedding)
        assert found[0].chunk_id == passage.chunk_id
        # A changed file's passages get new vectors; a keyword-only
        # collection given an embedder gets vectors for all at its next update.
        (docs / "ko-temple.md").write_text("A short new text about a temple bell.\n")
        indexer.update(store, "both", embedding=embedding)
        assert store.unembedded(collection.id) == []
        ids, matrix = store.vectors([collection.id])  # not the vectors kept from before
        assert len(ids) == store.collection("both").chunks != collection.chunks
        plain = DocumentStore(tmp_path / "plain.sqlite")
        indexer.add(plain, "p", [docs])
        cid = plain.collection("p").id
        assert len(plain.unembedded(cid)) == plain.collection("p").chunks
        plain.set_embedder(cid, bert.name)
        indexer.update(plain, "p", embedding=embedding)
        assert plain.unembedded(cid) == []
        with pytest.raises(LocalChatError, match="must be loaded"):
            indexer.update(plain, "p")
        # A passage as close as its own text is relevant, whatever its words.
        strict = grounding.retrieve(store, ["both"], passage.text, embedding=embedding)
        assert passage.text in [p.text for p in strict]


def test_embedding_prefixes_follow_the_family(tmp_path: Path) -> None:
    from localchat.core.documents.embedding import prefixes

    nomic = write_bert_gguf(tmp_path / "nomic-embed-text-v1.5.Q8_0.gguf")
    e5 = write_bert_gguf(tmp_path / "multilingual-e5-base-q8_0.gguf")
    assert prefixes(nomic) == ("search_query: ", "search_document: ")
    assert prefixes(e5) == ("query: ", "passage: ")


def test_the_docs_commands_with_an_embedder(bert: Path, tmp_path: Path) -> None:
    import json
    import shutil
    import subprocess
    import sys

    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    shutil.copy(bert, home / "models" / "bert.gguf")
    docs = tmp_path / "docs"
    docs.mkdir()
    corpus = Path(__file__).parent / "fixtures" / "documents"
    shutil.copy(corpus / "en-water-mill.md", docs)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "LOCALCHAT_HOME": str(home)}
        return subprocess.run([sys.executable, "-m", "localchat", "docs", *args],
                              capture_output=True, text=True, timeout=120, env=env)  # fmt: skip

    added = cli("add", "mill", str(docs), "--embedder", "bert", "--json")
    assert added.returncode == 0, added.stderr
    assert json.loads(cli("list", "--json").stdout)[0]["embedder"] == "bert.gguf"
    found = json.loads(cli("search", "mill", "waterwheel", "--json").stdout)
    assert found and found[0]["path"].endswith("en-water-mill.md")
    assert cli("update", "mill").returncode == 0
    outside = cli("add", "other", str(docs), "--embedder", str(bert))
    assert outside.returncode == 1 and "not an installed model" in outside.stderr
