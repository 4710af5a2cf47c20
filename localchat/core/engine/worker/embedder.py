"""The embedding model, beside the chat model in the same worker: a second
llama.cpp model and context, in embedding mode, that turns texts into
vectors (document search, ``/v1/embeddings``).

Pooling (mean, CLS, last token) is the model's own, read by llama.cpp from
its GGUF (``<arch>.pooling_type``); a model without pooling has its token
vectors averaged here. Every vector is normalised to length 1 (euclidean),
so that a dot product is the cosine similarity. Texts longer than the
model's context are cut to it (their start is what they are about)."""

from __future__ import annotations

from pathlib import Path

import llama_cpp
import numpy as np

from localchat.core.engine.protocol import Embed, EmbedderLoaded, Embeddings, LoadEmbedder
from localchat.core.engine.worker.llama_log import LlamaLog
from localchat.core.errors import EngineError, ModelLoadError

POOLING_NAMES = {0: "none", 1: "mean", 2: "cls", 3: "last", 4: "rank"}


class Embedder:
    def __init__(self, llm: llama_cpp.Llama, path: str) -> None:
        self.llm = llm
        self.path = path
        self.pooling = POOLING_NAMES.get(int(llm.pooling_type()), "mean")

    @classmethod
    def load(cls, req: LoadEmbedder, log: LlamaLog) -> Embedder:
        name = Path(req.path).name
        with log.load_report():
            try:
                # n_ubatch = n_batch: a non-causal model (BERT) must see a
                # whole text in one micro-batch.
                llm = llama_cpp.Llama(
                    model_path=req.path,
                    embedding=True,
                    n_ctx=req.n_ctx,
                    n_batch=req.n_ctx,
                    n_ubatch=req.n_ctx,
                    n_threads=req.threads,
                    n_threads_batch=req.threads,
                    n_gpu_layers=0,
                    use_mmap=True,
                    use_mlock=False,
                    verbose=False,
                )
            except (ValueError, RuntimeError, OSError) as exc:
                reason = log.last_error() or str(exc)
                raise ModelLoadError(f"llama.cpp could not load {name}: {reason}") from None
        if int(llm.pooling_type()) == 4:
            llm.close()
            raise ModelLoadError(f"{name} is a reranker, not an embedding model")
        return cls(llm, req.path)

    def info(self) -> EmbedderLoaded:
        return EmbedderLoaded(
            path=self.path,
            dim=int(self.llm.n_embd()),
            pooling=self.pooling,
            n_ctx=int(self.llm.n_ctx()),
        )

    def embed(self, req: Embed) -> Embeddings:
        if not req.texts:
            return Embeddings(np.zeros((0, self.llm.n_embd()), np.float32), ())
        limit = self.llm.n_ctx()
        rows: list[np.ndarray] = []
        counts: list[int] = []
        for text in req.texts:
            tokens = self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
            counts.append(min(len(tokens), limit))
        try:
            # llama-cpp-python packs several texts into each decode.
            out = self.llm.embed(list(req.texts), normalize=False, truncate=True)
        except (RuntimeError, ValueError) as exc:
            raise EngineError(f"embedding failed: {exc}") from None
        for vector in out:
            array = np.asarray(vector, dtype=np.float32)
            if array.ndim == 2:  # no pooling in the model: the tokens' mean
                array = array.mean(axis=0)
            rows.append(array)
        matrix = np.vstack(rows).astype(np.float32)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        matrix /= np.where(norms > 0, norms, 1.0)
        return Embeddings(matrix, tuple(counts))

    def close(self) -> None:
        self.llm.close()
