"""Scoring text with the loaded model: the logits at every position, and the
perplexity of a text or of marked tokens of separate sequences. Each evaluates
from an empty KV cache and leaves it empty: the next turn starts afresh."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import llama_cpp
import numpy as np

from localchat.core.engine.protocol import Logits, Perplexity, PerplexityReport, Score
from localchat.core.engine.worker.flags import Flags
from localchat.core.engine.worker.loader import Model
from localchat.core.errors import EngineError


def logits(model: Model, flags: Flags, req: Logits) -> np.ndarray:
    """The model's scores for the next token at every position of the tokens."""
    llm = _scoring_model(model, req.tokens)
    if not 0 < len(req.tokens) <= llm.n_ctx():
        raise EngineError(f"give between 1 and {llm.n_ctx()} tokens")
    try:
        return np.concatenate(list(_window_logits(llm, flags, req.tokens)))
    finally:
        model.forget_cache()


def perplexity(model: Model, flags: Flags, req: Perplexity) -> PerplexityReport:
    """Score windows of the text with logits for every position."""
    if req.tokens is not None:
        ids = list(req.tokens)
    else:
        ids = model.tokenizer.tokenize(req.text or "", add_bos=False, special=False)
    llm = _scoring_model(model, ids)
    window = min(req.window or llm.n_ctx(), llm.n_ctx())
    count = (len(ids) - 1) // window
    if req.max_windows:
        count = min(count, req.max_windows)
    if count < 1:
        raise EngineError(
            f"the text is {len(ids):,} tokens: at least {window + 1:,} are needed for one window"
        )
    nll, right = 0.0, 0
    try:
        for w in range(count):
            chunk = ids[w * window : w * window + window + 1]
            done = 0
            for batch in _window_logits(llm, flags, chunk[:-1]):
                targets = np.array(chunk[done + 1 : done + 1 + len(batch)])
                loss, hits = _nll(batch, targets)
                nll, right, done = nll + loss, right + hits, done + len(batch)
    finally:
        model.forget_cache()
    scored = count * window
    return PerplexityReport(count, scored, nll / scored, right / scored)


def score(model: Model, flags: Flags, req: Score) -> PerplexityReport:
    """Each sequence from an empty cache; only the marked tokens count."""
    llm = _scoring_model(model, [t for seq in req.sequences for t in seq])
    nll, right, scored = 0.0, 0, 0
    try:
        for ids, learn in zip(req.sequences, req.learn, strict=True):
            if len(ids) > llm.n_ctx():
                raise EngineError(
                    f"a sequence of {len(ids):,} tokens is longer than the context "
                    f"({llm.n_ctx():,})"
                )
            done = 0
            for batch in _window_logits(llm, flags, ids[:-1]):
                targets = np.array(ids[done + 1 : done + 1 + len(batch)])
                keep = np.array(learn[done + 1 : done + 1 + len(batch)], dtype=bool)
                done += len(batch)
                if not keep.any():
                    continue
                loss, hits = _nll(batch[keep], targets[keep])
                nll, right, scored = nll + loss, right + hits, scored + int(keep.sum())
    finally:
        model.forget_cache()
    if not scored:
        raise EngineError("no token was marked to score")
    return PerplexityReport(len(req.sequences), scored, nll / scored, right / scored)


def _scoring_model(model: Model, ids: Sequence[int]) -> llama_cpp.Llama:
    if model.vocab_only:
        raise EngineError("this model was loaded for its tokenizer only; load it fully")
    llm = model.llm
    n_vocab = llm.n_vocab()
    if any(not 0 <= t < n_vocab for t in ids):
        raise EngineError("a token id is outside the model's vocabulary")
    return llm


def _window_logits(llm: llama_cpp.Llama, flags: Flags, ids: Sequence[int]) -> Iterator[np.ndarray]:
    """The logits at every position of ``ids`` (evaluated from an empty
    cache), a batch of at most ``n_batch`` rows at a time."""
    llm._ctx.kv_cache_clear()
    n_vocab = llm.n_vocab()
    for start in range(0, len(ids), llm.n_batch):
        part = list(ids[start : start + llm.n_batch])
        llm._batch.set_batch(part, n_past=start, logits_all=True)
        try:
            llm._ctx.decode(llm._batch)
        except RuntimeError:
            if flags.cancelled:  # the abort callback stopped it
                raise EngineError("cancelled") from None
            raise
        ptr = llama_cpp.llama_get_logits(llm._ctx.ctx)
        yield np.ctypeslib.as_array(ptr, shape=(len(part), n_vocab)).copy()


def _nll(logits: np.ndarray, targets: np.ndarray) -> tuple[float, int]:
    """Summed negative log-likelihood of ``targets`` under each row of
    ``logits`` (a stable log-softmax in float64), and how many were the top choice."""
    values = logits.astype(np.float64)
    top = values.max(axis=1, keepdims=True)
    logz = top[:, 0] + np.log(np.exp(values - top).sum(axis=1))
    nll = float((logz - values[np.arange(len(values)), targets]).sum())
    return nll, int((values.argmax(axis=1) == targets).sum())
