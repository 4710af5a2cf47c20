"""Document collections: how fast files are indexed, how fast a question is
searched, and how big the index is.

Run from the repository root::

    .venv/bin/python benchmarks/documents.py            # 8 MB of text, 10k and 100k passages
    .venv/bin/python benchmarks/documents.py --quick    # 1 MB, 10k passages

- **Indexing** (keyword only): the test corpus's documents
  (``tests/fixtures/documents``: English, Korean, Turkish) copied with small
  changes until there are ``--mb`` megabytes of Markdown, indexed by
  ``indexer.add``: MB/min, and the index's size per MB of text.
- **Embedding**: the passages of one MB embedded by our engine (the worker's
  embedding model, batches of 32, through the pipe) against
  llama-cpp-python embedding the same passages in one loop in this process
  (goal: >= 0.9x), with a random-weight BERT of bge-small's shape (384 wide,
  12 layers) and BGE's real vocabulary, written once into
  ``benchmarks/.cache``.
- **Search**: the median time of ``search.search`` (words and trigrams,
  fused) over 50 questions, at 10,000 and 100,000 passages (the passages
  are the corpus's, repeated; goal: <= 50 ms at 100k on this machine), and
  with exact vector search over 384-wide float16 vectors added.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from localchat.core.documents import indexer, search  # noqa: E402
from localchat.core.documents.chunking import Chunk  # noqa: E402
from localchat.core.documents.store import DocumentStore  # noqa: E402

CORPUS = ROOT / "tests" / "fixtures" / "documents"
CACHE = ROOT / "benchmarks" / ".cache"


def corpus_texts() -> list[tuple[str, str]]:
    return [
        (p.name, p.read_text(encoding="utf-8"))
        for p in sorted(CORPUS.glob("*.md"))
        if p.name != "README.md"
    ]


def write_folder(folder: Path, megabytes: float, seed: int = 0) -> int:
    """Copies of the corpus, each a little different (a number changed per
    paragraph, so the passages are not all alike), to ``megabytes``."""
    rng = random.Random(seed)
    texts = corpus_texts()
    total, i = 0, 0
    while total < megabytes * 1e6:
        name, text = texts[i % len(texts)]
        paragraphs = text.split("\n\n")
        changed = "\n\n".join(f"{p} ({rng.randint(1, 99999)})" for p in paragraphs)
        path = folder / f"{i:05d}-{name}"
        path.write_text(changed, encoding="utf-8")
        total += path.stat().st_size
        i += 1
    return total


def bench_indexing(megabytes: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "docs"
        folder.mkdir()
        size = write_folder(folder, megabytes)
        store = DocumentStore(Path(tmp) / "documents.sqlite")
        t0 = time.perf_counter()
        report = indexer.add(store, "bench", [folder])
        took = time.perf_counter() - t0
        chunks = store.collection("bench").chunks
        store.close()
        db = sum(f.stat().st_size for f in Path(tmp).glob("documents.sqlite*"))
    mb = size / 1e6
    return {
        "files": len(report.indexed),
        "mb": mb,
        "seconds": took,
        "mb_per_min": mb / took * 60,
        "passages": chunks,
        "index_mb_per_text_mb": db / 1e6 / mb,
    }


def fill(store: DocumentStore, n: int, dim: int | None = None) -> None:
    """``n`` passages (the corpus's, repeated) straight into the store, by
    files of 100 (and random vectors of ``dim`` when given)."""
    texts = [t for _, text in corpus_texts() for t in text.split("\n\n") if len(t) > 80]
    cid = store.create("bench", [Path("/nowhere")])
    rng = np.random.default_rng(0)
    if dim:
        store.set_embedder(cid, "random.gguf")
    for f in range(0, n, 100):
        chunks = [
            Chunk(f"{texts[(f + k) % len(texts)]} ({f + k})", tokens=80)
            for k in range(min(100, n - f))
        ]
        vectors = None
        if dim:
            vectors = rng.standard_normal((len(chunks), dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        store.put_file(cid, f"/nowhere/{f}.md", size=1, mtime=0, sha256="", chunks=chunks,
                       vectors=vectors)  # fmt: skip


class FakeEmbedding:
    """The query's vector without a model: the search's cost, not the model's."""

    def __init__(self, dim: int) -> None:
        self.name = "random.gguf"
        self.dim = dim

    def query(self, text: str) -> np.ndarray:
        v = np.random.default_rng(len(text)).standard_normal(self.dim).astype(np.float32)
        return v / np.linalg.norm(v)


def bench_search(n: int, vectors: bool) -> float:
    questions = [q["question"] for q in json.loads((CORPUS / "questions.json").read_text())]
    with tempfile.TemporaryDirectory() as tmp:
        store = DocumentStore(Path(tmp) / "documents.sqlite")
        fill(store, n, 384 if vectors else None)
        embedding = FakeEmbedding(384) if vectors else None
        for q in questions[:5]:  # warm the page cache
            search.search(store, ["bench"], q, embedding=embedding)  # type: ignore[arg-type]
        times = []
        for q in questions[:50]:
            t0 = time.perf_counter()
            search.search(store, ["bench"], q, embedding=embedding)  # type: ignore[arg-type]
            times.append(time.perf_counter() - t0)
        store.close()
    return statistics.median(times) * 1000


def bench_embedding(megabytes: float) -> dict[str, float] | None:
    try:
        import llama_cpp
    except ImportError:
        print("embedding: llama-cpp-python is not installed; skipped")
        return None
    from localchat.core.documents.chunking import chunk
    from localchat.core.documents.embedding import BATCH
    from localchat.core.documents.extract import extract
    from localchat.core.engine.client import Engine
    from localchat.testing.tiny_models import write_bert_gguf

    CACHE.mkdir(exist_ok=True)
    model = CACHE / "bert-e384-l12-bge-vocab.gguf"
    if not model.exists():
        write_bert_gguf(model, n_embd=384, n_layer=12, n_head=12, n_ff=1536)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_folder(folder, megabytes)
        texts = [c.text for p in sorted(folder.iterdir()) for c in chunk(extract(p).blocks)]
    threads = os.cpu_count() or 2
    llm = llama_cpp.Llama(str(model), embedding=True, n_ctx=512, n_batch=512, n_ubatch=512,
                          n_threads=threads, n_threads_batch=threads, verbose=False)  # fmt: skip
    ours = theirs = 0.0
    with Engine() as engine:
        engine.load_embedder(model, n_ctx=512, threads=threads)
        engine.embed(texts[:BATCH])  # warm both
        llm.embed(texts[:BATCH])
        # Batch by batch, alternating: both see the same machine.
        for i in range(0, len(texts), BATCH):
            part = texts[i : i + BATCH]
            t0 = time.perf_counter()
            engine.embed(part)
            t1 = time.perf_counter()
            llm.embed(part, normalize=True)
            t2 = time.perf_counter()
            ours += t1 - t0
            theirs += t2 - t1
    llm.close()
    return {"passages": len(texts), "ours_s": ours, "llama_cpp_s": theirs, "ratio": theirs / ours}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--mb", type=float, default=None, help="text to index (8; quick: 1)")
    args = parser.parse_args()
    mb = args.mb or (1.0 if args.quick else 8.0)
    r = bench_indexing(mb)
    print(
        f"indexing (keyword only): {r['files']} files, {r['mb']:.1f} MB, {r['passages']} "
        f"passages in {r['seconds']:.1f} s: {r['mb_per_min']:.0f} MB/min; "
        f"index {r['index_mb_per_text_mb']:.2f} MB per MB of text"
    )
    e = bench_embedding(0.1 if args.quick else 0.5)
    if e is not None:
        print(
            f"embedding {e['passages']} passages (384-wide BERT): ours {e['ours_s']:.1f} s, "
            f"llama-cpp-python in one loop {e['llama_cpp_s']:.1f} s: ratio {e['ratio']:.2f} "
            "(goal >= 0.9)"
        )
    for n in (10_000,) if args.quick else (10_000, 100_000):
        words = bench_search(n, vectors=False)
        both = bench_search(n, vectors=True)
        print(
            f"search at {n:,} passages: {words:.1f} ms (words and trigrams), "
            f"{both:.1f} ms with 384-wide vectors (median of 50; goal <= 50 ms at 100k)"
        )


if __name__ == "__main__":
    main()
