"""Each generated token's log-probability and its most likely rivals, read
from the logits llama.cpp left for the position just sampled: a
log-softmax at temperature 1, before any sampler (OpenAI's ``logprobs``).

Read between the sample and the next decode (which overwrites the logits),
in numpy: ~0.1 ms for a 32k vocabulary, ~0.25 ms for 128k, against tens of
milliseconds a token for a real model."""

from __future__ import annotations

import llama_cpp
import numpy as np

from localchat.core.engine.protocol import TokenLogprob
from localchat.core.engine.worker.tokenizer import LlamaTokenizer

Read = tuple[float, tuple[tuple[int, str, float], ...], float]
"""A token's log-probability, its position's top candidates and the
position's log-normaliser (logprob + it = the raw logit)."""


class Probe:
    def __init__(self, llm: llama_cpp.Llama, tokenizer: LlamaTokenizer, top: int) -> None:
        self.llm = llm
        self.tokenizer = tokenizer
        self.top = top
        self.n_vocab = llm.n_vocab()
        self._texts: dict[int, str] = {}
        self._buffer = np.empty(self.n_vocab, dtype=np.float32)

    def read(self, token: int) -> Read:
        """``token``'s log-probability at the position just sampled, and the
        ``top`` candidates there, most probable first."""
        pointer = llama_cpp.llama_get_logits_ith(self.llm._ctx.ctx, -1)
        logits = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))
        scaled = self._buffer
        high = float(logits.max())
        np.subtract(logits, high, out=scaled)
        np.exp(scaled, out=scaled)  # each token's probability relative to the best
        lse = high + float(np.log(scaled.sum()))  # float32, pairwise: ~1e-7 relative
        logprob = float(logits[token]) - lse
        if self.top <= 0:
            return logprob, (), lse
        best = self._best(logits)
        top = tuple((int(t), self.text(int(t)), float(logits[t]) - lse) for t in best)
        return logprob, top, lse

    def _best(self, logits: np.ndarray) -> np.ndarray:
        """The ``top`` most likely tokens, most likely first (a partition of
        the vocabulary, then a sort of the few)."""
        k = min(self.top, self.n_vocab)
        likely = np.argpartition(logits, -k)[-k:]
        return likely[np.argsort(-logits[likely], kind="stable")]

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
            out.append(TokenLogprob(token, text, read[0], read[1], thinking, lse=read[2]))
    return tuple(out)
