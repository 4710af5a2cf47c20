"""Each generated token's log-probability and its most likely rivals, read
from the logits llama.cpp left for the position just sampled: a
log-softmax at temperature 1, before any sampler (OpenAI's ``logprobs``);
and the distribution the token was actually drawn from, the sampler chain
replayed (``sampling.py``) on the candidates that can survive it.

Read between the sample and the next decode (which overwrites the logits),
in numpy, keeping only what is needed (the log-normaliser, the ~100 best
logits): a few tenths of a millisecond a token for a 128k vocabulary,
against tens of milliseconds a token for a real model. The candidates'
texts and the chain's replay are made once the reply is over
(:meth:`Probe.finish`, ~0.2 ms a token), not while it streams."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Position:
    """What :meth:`Probe.read` keeps of a position while the reply is being
    generated (the least work between two decodes); :meth:`Probe.finish`
    makes the :data:`Read` of it once the reply is over."""

    logprob: float
    lse: float
    ids: np.ndarray
    """The best raw logits' token ids, most likely first (what can survive
    the sampler chain, and the top candidates)."""
    logits: np.ndarray
    window: tuple[int, ...]
    """The tokens the sampler's penalty saw (its last ``last_n``)."""


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
        # What can survive the chain: the best raw logits (top-k's k of them,
        # with room for penalised ones to fall below).
        k = settings.top_k if 0 < settings.top_k <= 4 * MAX_SAMPLED else 2 * MAX_SAMPLED
        self.limited = 0 < settings.top_k <= k
        """Whether top-k bounds the survivors: then the replay is exact."""
        self.width = min(self.n_vocab, max(top, k + self.last_n))

    def read(self, token: int, recent: Sequence[int]) -> Position:
        """``token``'s log-probability at the position just sampled and the
        candidates there, kept for :meth:`finish`; ``recent``: the tokens
        sampled before it (the sampler's penalty window)."""
        pointer = llama_cpp.llama_get_logits_ith(self.llm._ctx.ctx, -1)
        logits = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))
        scaled = self._buffer
        high = float(logits.max())
        np.subtract(logits, high, out=scaled)
        np.exp(scaled, out=scaled)  # each token's probability relative to the best
        lse = high + float(np.log(scaled.sum()))  # float32, pairwise: ~1e-7 relative
        best = np.argpartition(logits, -self.width)[-self.width :]
        best = best[np.argsort(-logits[best], kind="stable")]
        window = tuple(recent[-self.last_n :]) if self.last_n > 0 else ()
        return Position(float(logits[token]) - lse, lse, best, logits[best].copy(), window)

    def finish(self, position: Position) -> Read:
        """The position's :data:`Read`: the top candidates with their texts,
        and the distribution drawn from, the sampler chain replayed on the
        candidates that can survive it (after the reply: it costs nothing
        while it streams)."""
        s = self.settings
        lse = position.lse
        # A token outside the best cannot survive: the penalty (>= 1, as
        # declared) only lowers the tokens it touches.
        ids = position.ids.astype(np.int64)
        raw = position.logits.astype(np.float64)
        mass = float(np.exp(raw - lse).sum())
        chain = apply_chain(
            ids,
            raw,
            list(position.window),
            temperature=s.temperature,
            top_k=s.top_k,
            top_p=s.top_p,
            min_p=s.min_p,
            repeat_penalty=s.repeat_penalty,
            penalty_last_n=self.last_n,
            rest=None if self.limited else max(0.0, 1.0 - mass),
        )
        kept = np.flatnonzero(chain.final > 0)
        kept = kept[np.argsort(-chain.final[kept], kind="stable")][:MAX_SAMPLED]
        sampled = tuple((int(ids[i]), float(chain.final[i])) for i in kept)
        top = tuple(
            (int(t), self.text(int(t)), float(v) - lse)
            for t, v in zip(position.ids[: self.top], position.logits[: self.top], strict=True)
        )
        return position.logprob, top, lse, sampled

    def streamed(self, token: int, text: str, position: Position | None) -> TokenLogprob:
        """A token's entry while the reply streams: its log-probability and
        top candidates (the chain's replay waits for :meth:`finish`)."""
        if position is None:
            return TokenLogprob(token, text, 0.0, (), forced=True)
        top = tuple(
            (int(t), self.text(int(t)), float(v) - position.lse)
            for t, v in zip(position.ids[: self.top], position.logits[: self.top], strict=True)
        )
        return TokenLogprob(token, text, position.logprob, top, lse=position.lse)

    def text(self, token: int) -> str:
        """A candidate's text on its own (a partial character shows as U+FFFD)."""
        if token not in self._texts:
            piece = self.tokenizer.piece(token, special=True)
            self._texts[token] = piece.decode("utf-8", errors="replace")
        return self._texts[token]


def token_entries(
    probe: Probe,
    tokens: list[int],
    texts: list[str],
    positions: list[Position | None],
    reasoning: list[bool],
) -> tuple[TokenLogprob, ...]:
    """The reply's tokens as :class:`TokenLogprob` (a token the engine wrote
    itself has no read: it is marked ``forced``)."""
    out = []
    for token, text, position, thinking in zip(tokens, texts, positions, reasoning, strict=True):
        read = probe.finish(position) if position is not None else None
        if read is None:
            out.append(TokenLogprob(token, text, 0.0, (), thinking, forced=True))
        else:
            logprob, top, lse, sampled = read
            out.append(TokenLogprob(token, text, logprob, top, thinking, lse=lse, sampled=sampled))
    return tuple(out)
