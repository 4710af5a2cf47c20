"""Each generated token's log-probability and its most likely rivals, read
from the logits llama.cpp left for the position just sampled: a
log-softmax at temperature 1, before any sampler (OpenAI's ``logprobs``);
and the distribution the token was actually drawn from, the sampler chain
replayed (``sampling.py``) on the candidates that can survive it.

Read between the sample and the next decode (which overwrites the logits),
in numpy: a few tenths of a millisecond a token for a 128k vocabulary,
against tens of milliseconds a token for a real model."""

from __future__ import annotations

from collections.abc import Sequence

import llama_cpp
import numpy as np

from localchat.core.engine.protocol import MAX_SAMPLED, TokenLogprob
from localchat.core.engine.sampling import apply_chain
from localchat.core.engine.worker.tokenizer import LlamaTokenizer
from localchat.core.params import GenerationSettings

Read = tuple[float, tuple[tuple[int, str, float], ...], float, tuple[tuple[int, float], ...]]
"""A token's log-probability, its position's top candidates, the position's
log-normaliser (logprob + it = the raw logit), and the distribution the
token was drawn from."""


class Probe:
    """Reads the positions of a reply made with ``settings``."""

    def __init__(
        self,
        llm: llama_cpp.Llama,
        tokenizer: LlamaTokenizer,
        top: int,
        settings: GenerationSettings,
    ) -> None:
        self.llm = llm
        self.tokenizer = tokenizer
        self.top = top
        self.settings = settings
        self.n_vocab = llm.n_vocab()
        self.last_n = int(getattr(llm, "last_n_tokens_size", 64))
        """The repeat penalty's window (llama-cpp-python's sampler)."""
        self._texts: dict[int, str] = {}
        self._buffer = np.empty(self.n_vocab, dtype=np.float32)

    def read(self, token: int, recent: Sequence[int]) -> Read:
        """``token``'s log-probability at the position just sampled, the
        ``top`` candidates there (most probable first), and the distribution
        it was drawn from; ``recent``: the tokens sampled before it (the
        sampler's penalty window)."""
        pointer = llama_cpp.llama_get_logits_ith(self.llm._ctx.ctx, -1)
        logits = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))
        scaled = self._buffer
        high = float(logits.max())
        np.subtract(logits, high, out=scaled)
        np.exp(scaled, out=scaled)  # each token's probability relative to the best
        lse = high + float(np.log(scaled.sum()))  # float32, pairwise: ~1e-7 relative
        logprob = float(logits[token]) - lse
        s = self.settings
        # What can survive the chain: the best raw logits (top-k's k of them,
        # with room for penalised ones to fall below), and the penalised ones.
        k = s.top_k if 0 < s.top_k <= 4 * MAX_SAMPLED else 2 * MAX_SAMPLED
        width = min(self.n_vocab, max(self.top, k + self.last_n))
        best = np.argpartition(logits, -width)[-width:]
        best = best[np.argsort(-logits[best], kind="stable")]
        window = [int(t) for t in recent[-self.last_n :]] if self.last_n > 0 else []
        ids = np.union1d(best, np.asarray(window, dtype=np.int64)).astype(np.int64)
        raw = logits[ids].astype(np.float64)
        limited = 0 < s.top_k <= k  # then every survivor is among ``ids``: exact
        mass = float(np.exp(raw - lse).sum())
        chain = apply_chain(
            ids,
            raw,
            window,
            temperature=s.temperature,
            top_k=s.top_k,
            top_p=s.top_p,
            min_p=s.min_p,
            repeat_penalty=s.repeat_penalty,
            penalty_last_n=self.last_n,
            rest=None if limited else max(0.0, 1.0 - mass),
        )
        kept = np.flatnonzero(chain.final > 0)
        kept = kept[np.argsort(-chain.final[kept], kind="stable")][:MAX_SAMPLED]
        sampled = tuple((int(ids[i]), float(chain.final[i])) for i in kept)
        top = tuple((int(t), self.text(int(t)), float(logits[t]) - lse) for t in best[: self.top])
        return logprob, top, lse, sampled

    def text(self, token: int) -> str:
        """A candidate's text on its own (a partial character shows as U+FFFD)."""
        if token not in self._texts:
            piece = self.tokenizer.piece(token, special=True)
            self._texts[token] = piece.decode("utf-8", errors="replace")
        return self._texts[token]


def token_entries(
    tokens: list[int],
    texts: list[str],
    reads: list[Read | None],
    reasoning: list[bool],
) -> tuple[TokenLogprob, ...]:
    """The reply's tokens as :class:`TokenLogprob` (a token the engine wrote
    itself has no read: it is marked ``forced``)."""
    out = []
    for token, text, read, thinking in zip(tokens, texts, reads, reasoning, strict=True):
        if read is None:
            out.append(TokenLogprob(token, text, 0.0, (), thinking, forced=True))
        else:
            logprob, top, lse, sampled = read
            out.append(TokenLogprob(token, text, logprob, top, thinking, lse=lse, sampled=sampled))
    return tuple(out)
