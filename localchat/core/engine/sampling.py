"""The sampler chain, replayed in numpy: what each stage did to a position's
candidates (the token X-ray) and how the distribution changes as the
sampling settings move (the sampling playground), without calling the model.

It mirrors the chain llama-cpp-python 0.3.36 builds in ``Llama._init_sampler``
for our engine's settings, and the rules of llama.cpp's samplers in
``src/llama-sampler.cpp`` (the copy vendored in that release)::

    penalties -> top-k -> typical -> top-p -> min-p -> temperature -> dist

* **penalties** (``repeat_penalty`` over the last ``penalty_last_n`` generated
  tokens): a repeated token's positive logit is divided by the penalty, a
  negative (or zero) one multiplied; frequency and presence penalties subtract
  ``count * frequency + presence`` (our engine passes 0 for both). Off when
  ``penalty_last_n <= 0`` or every penalty is neutral. Removes nothing.
* **top-k**: keeps the ``k`` highest logits; ``k <= 0`` is no limit, ``k`` is
  capped at the candidate count.
* **typical** at ``typical_p = 1.0``, which our engine always passes: a no-op,
  so it has no parameter here.
* **top-p**: the softmax of the survivors (temperature 1: top-p and min-p run
  *before* the temperature), sorted; keeps the shortest prefix whose cumulative
  probability is ``>= p`` (at least one token); ``p >= 1`` is off.
* **min-p**: keeps the tokens whose logit is ``>= max_logit + log(p)`` (a
  probability ``>= p * max probability``), at least one; ``p <= 0`` is off.
* **temperature**: divides the logits (1 is a no-op).
* **dist**: the softmax of what is left, which the token is drawn from.

Temperature 0 is greedy (penalties, then the highest logit), a negative one
draws from the penalised softmax of every token with no filter, both as
llama-cpp-python builds them.

The comparisons run in float32 with llama.cpp's order of operations (the
softmax denominators summed in the order its candidate array is in, the
cumulative sum of top-p, min-p's ``max + logf(p)`` threshold), so which
tokens survive matches llama.cpp also where a probability lands exactly on
a threshold (e.g. four equal candidates and top-p 0.5 keeps two).

Where tied logits straddle a cut (top-k, top-p, and min-p above 1, which keeps
one token) llama.cpp keeps whichever its ``std::partial_sort`` leaves in
front, which depends on the sort's internals; here the candidate given first
wins. The set of kept logits (so the probabilities) is the same either way.

Pure numpy: no llama_cpp, no Qt. About 0.05 ms for 40 candidates (a slider
can redraw on every move), about 15 ms for a whole 128k vocabulary (a full
sort).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
import numpy.typing as npt

Stage = Literal["", "top_k", "top_p", "min_p", "greedy"]
"""Where a candidate left the chain ("" for kept ones). The penalty only moves
logits; "greedy" is temperature 0 keeping only the best token."""

CHAIN = ("penalties", "top_k", "typical", "top_p", "min_p", "temperature", "dist")
"""The chain's order, as llama-cpp-python 0.3.36 builds it for temperature > 0."""

_F32 = np.float32
_T = TypeVar("_T", bound=np.generic)


@dataclass(frozen=True)
class Sampled:
    """One position run through the sampler chain.

    Every array is in the order the candidates were given and read-only.
    Entropies are in **bits**."""

    ids: npt.NDArray[np.int64]
    """The candidates' token ids, as given."""
    raw: npt.NDArray[np.float64]
    """Probabilities at temperature 1 before any sampler, over the whole
    vocabulary when ``rest`` was given (then they add up to ``1 - rest``)."""
    penalized_logits: npt.NDArray[np.float64]
    """The logits after the repetition penalty (float32 values, as llama.cpp
    computes them)."""
    penalty_hit: npt.NDArray[np.bool_]
    """Which candidates the penalty changed: those among the last
    ``penalty_last_n`` generated tokens, when the penalty is on."""
    penalized: npt.NDArray[np.float64]
    """Probabilities at temperature 1 after the penalty (normalised like
    ``raw``; the tokens not given keep their mass)."""
    removed_by: npt.NDArray[np.str_]
    """The stage that removed each candidate (a :data:`Stage`; "" = kept)."""
    final: npt.NDArray[np.float64]
    """The distribution the token is drawn from: after the temperature,
    renormalised over the kept candidates, 0 for removed ones."""
    entropy_raw: float
    """Entropy of ``raw`` in bits. With ``rest`` > 0 it counts the given
    candidates only, a lower bound on the whole vocabulary's."""
    entropy_final: float
    """Entropy of ``final`` in bits (0 for a single kept token)."""
    complete: bool
    """Whether every token the chain keeps is among the given candidates, so
    ``final`` is the real distribution. False when tokens that were not given
    may survive (only possible with ``rest`` > 0): then ``final`` is spread
    over the given ones only and overstates them."""

    @property
    def kept(self) -> npt.NDArray[np.bool_]:
        """The candidates the token may be drawn from."""
        return self.removed_by == ""


def apply_chain(
    ids: npt.ArrayLike,
    logits: npt.ArrayLike,
    recent: Sequence[int] | npt.ArrayLike = (),
    *,
    temperature: float,
    top_k: int,
    top_p: float,
    min_p: float,
    repeat_penalty: float,
    penalty_last_n: int = 64,
    frequency_penalty: float = 0.0,
    presence_penalty: float = 0.0,
    rest: float | None = None,
) -> Sampled:
    """Run one position's candidates through the sampler chain.

    ``ids`` and ``logits`` are the candidates' token ids and **raw** logits
    (what the model output, not log-probabilities: the penalty divides a
    positive logit and multiplies a negative one, so it depends on the
    logits' offset; every other stage does not). They may be the whole
    vocabulary or only the top N a position stored. ``recent`` is the
    tokens generated before this position, oldest first (llama-cpp-python's
    sampler sees the reply's tokens, not the prompt's); the last
    ``penalty_last_n`` of them (64, the engine's ``last_n_tokens_size``) are
    penalised.

    ``rest`` is the probability mass (at temperature 1, before the penalty)
    of the tokens *not* given, for top-N candidates: e.g. ``1 -
    sum(exp(logprobs))`` of the stored top-N log-probabilities. With it
    ``raw`` and ``penalized`` are normalised over the whole vocabulary, and
    top-p's probabilities and cumulative sum are the real ones whenever the
    top-p cut lies among the given candidates (the others all sort after
    them). The given candidates must be the top N by raw logit (the
    tokens not given are then all at or below the lowest given logit). What
    top-N candidates cannot tell, and this approximates:

    * the not-given tokens are assumed untouched by the penalty (their mass
      stays ``rest``) and, for top-k and top-p, to rank below every given
      one. A given token that the penalty pushes below the lowest given raw
      logit may really be cut by top-k where this says top-p or min-p
      (whether it is kept or not agrees, unless :attr:`Sampled.complete` is
      False);
    * with ``top_k`` > N, all of their mass is assumed to survive top-k
      (llama.cpp keeps only ``top_k - N`` of them), which makes top-p keep
      at least as many of the given tokens as it really does;
    * when some of them may survive every cut (top-k lets them through,
      top-p is not reached within the given ones, min-p's threshold is at or
      below the lowest given logit), ``final`` is spread over the given ones
      only and overstates them: :attr:`Sampled.complete` is then False.

    Without ``rest`` the given candidates are taken to be the whole
    vocabulary, as they are for llama.cpp when given all of it.
    """
    token_ids = np.array(ids, dtype=np.int64)  # a copy: it is frozen below
    raw_logits = np.asarray(logits, dtype=_F32)
    if token_ids.ndim != 1 or raw_logits.shape != token_ids.shape or token_ids.size == 0:
        raise ValueError("ids and logits must be 1-D arrays of the same, non-zero length")
    if not math.isfinite(float(raw_logits.max())):
        raise ValueError("the highest logit must be finite")
    rest_mass = 0.0 if rest is None else float(rest)
    if not 0.0 <= rest_mass < 1.0:
        raise ValueError("rest must be in [0, 1)")
    n = token_ids.size

    # Temperature-1 probabilities over the whole vocabulary. The tokens not
    # given are kept as one mass in log space (-inf when there are none), so
    # it can be added to any softmax denominator, whatever its reference.
    top = float(raw_logits.max())
    weights = np.exp(raw_logits.astype(np.float64) - top)
    given = float(weights.sum())
    log_rest = math.log(given * rest_mass / (1.0 - rest_mass)) + top if rest_mass > 0 else -math.inf
    raw = weights / (given + _rest_weight(log_rest, top))

    pen, hit = _penalize(
        token_ids,
        raw_logits,
        recent,
        penalty_last_n,
        repeat_penalty,
        frequency_penalty,
        presence_penalty,
    )
    pen_top = float(pen.max())
    pen_weights = np.exp(pen.astype(np.float64) - pen_top)
    penalized = pen_weights / (float(pen_weights.sum()) + _rest_weight(log_rest, pen_top))

    removed = np.full(n, "", dtype="<U6")
    final = np.zeros(n, dtype=np.float64)
    complete = True
    if temperature == 0.0:
        # Greedy: llama.cpp's greedy sampler takes the first highest logit
        # in the array's order, which is the order given (the penalty does
        # not sort).
        best = int(np.argmax(pen))
        removed[:] = "greedy"
        removed[best] = ""
        final[best] = 1.0
    elif temperature < 0.0:
        # llama-cpp-python: penalties, then dist over everything.
        final[:] = pen_weights / float(pen_weights.sum())
        complete = rest_mass == 0.0
    else:
        floor = raw_logits.min()
        order, rest_may = _filter(pen, removed, log_rest, floor, top_k, top_p, min_p)
        _temperature(pen, order, temperature, final)
        complete = not rest_may

    return Sampled(
        ids=_frozen(token_ids),
        raw=_frozen(raw),
        penalized_logits=_frozen(pen.astype(np.float64)),
        penalty_hit=_frozen(hit),
        penalized=_frozen(penalized),
        removed_by=_frozen(removed),
        final=_frozen(final),
        entropy_raw=_entropy_bits(raw),
        entropy_final=_entropy_bits(final),
        complete=complete,
    )


def _penalize(
    ids: npt.NDArray[np.int64],
    logits: npt.NDArray[np.float32],
    recent: Sequence[int] | npt.ArrayLike,
    last_n: int,
    repeat: float,
    frequency: float,
    presence: float,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """``llama_sampler_penalties_apply``: the logits after the penalties, in
    float32, and which candidates they touched."""
    repeat32, frequency32, presence32 = _F32(repeat), _F32(frequency), _F32(presence)
    last_n = max(int(last_n), 0)  # llama_sampler_init_penalties clamps it so
    history = np.asarray(recent, dtype=np.int64).reshape(-1)
    off = last_n == 0 or (repeat32 == 1 and frequency32 == 0 and presence32 == 0)
    if off or history.size == 0:
        return logits.copy(), np.zeros(ids.size, dtype=bool)
    tokens, counts = np.unique(history[-last_n:], return_counts=True)
    where = np.minimum(np.searchsorted(tokens, ids), tokens.size - 1)
    hit = tokens[where] == ids
    out = logits.copy()
    chosen = out[hit]
    out[hit] = np.where(chosen <= 0, chosen * repeat32, chosen / repeat32)
    if frequency32 != 0 or presence32 != 0:
        count = counts[where[hit]].astype(_F32)
        out[hit] -= count * frequency32 + presence32
    return out, hit


def _filter(
    logits: npt.NDArray[np.float32],
    removed: npt.NDArray[np.str_],
    log_rest: float,
    floor: np.float32,
    top_k: int,
    top_p: float,
    min_p: float,
) -> tuple[npt.NDArray[np.intp], bool]:
    """Top-k, top-p and min-p: marks what each removes in ``removed`` and
    returns the survivors' positions, highest logit first, and whether some
    of the tokens not given may have survived too.

    The tokens not given (``log_rest`` > -inf) have logits at most ``floor``,
    the lowest given raw logit. They join top-p's softmax as one mass when
    top-k lets them through; whether some of them may survive a cut is
    decided against ``floor``, so a given token that the penalty pushed below
    it makes the answer "may" rather than "no"."""
    n = logits.size
    # Highest logit first; among equal logits the one given first (llama.cpp's
    # own order among ties is its sort's).
    order = np.argsort(-logits, kind="stable")
    rest_in = rest_may = log_rest > -math.inf
    # Whether llama.cpp's array is sorted by now. Until something sorts it, it
    # is in the order given, which is the order top-p's softmax sums in.
    is_sorted = False

    if top_k > 0:
        k = min(int(top_k), n)
        removed[order[k:]] = "top_k"
        order = order[:k]
        is_sorted = True
        rest_in = rest_in and top_k > n  # else they rank below the given ones
        rest_may = rest_may and top_k > int(np.count_nonzero(logits >= floor))

    p32 = _F32(top_p)
    if p32 < 1:
        # llama_sampler_softmax_impl without sorting, then the cumulative sum
        # over the sorted candidates, both in float32.
        summed = order if is_sorted else np.arange(n)
        best = logits[order[0]]
        exps = _expf(logits[summed] - best)
        total = np.cumsum(exps, dtype=_F32)[-1]
        if rest_in:
            total = _F32(float(total) + _rest_weight(log_rest, float(best)))
        probs = np.empty(n, dtype=_F32)
        probs[summed] = exps / total
        reached = np.flatnonzero(np.cumsum(probs[order], dtype=_F32) >= p32)
        if reached.size:
            last = int(reached[0]) + 1  # min_keep = 1 always holds here
            removed[order[last:]] = "top_p"
            order = order[:last]
            rest_may = rest_may and bool(logits[order[-1]] < floor)
        is_sorted = True

    m32 = _F32(min_p)
    if m32 > 0:
        threshold = logits[order[0]] + _F32(math.log(float(m32)))
        passing = logits[order] >= threshold  # a prefix: order is sorted
        # None pass only for min_p > 1: llama.cpp then keeps its first token.
        passed = int(np.count_nonzero(passing))
        removed[order[max(passed, 1) :]] = "min_p"
        order = order[: max(passed, 1)]
        rest_may = rest_may and passed > 0 and bool(threshold <= floor)
    return order, rest_may


def _temperature(
    logits: npt.NDArray[np.float32],
    order: npt.NDArray[np.intp],
    temperature: float,
    final: npt.NDArray[np.float64],
) -> None:
    """``llama_sampler_temp_impl`` and ``llama_sampler_dist_apply``: writes
    the survivors' probabilities into ``final``."""
    t32 = _F32(temperature)
    kept = logits[order]
    if t32 <= 0:
        # A positive temperature too small for a float: llama.cpp's temp
        # sampler then keeps only the first highest logit in its array.
        final[order[0]] = 1.0
        return
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = kept / t32 if t32 != 1 else kept
        shifted = scaled - scaled.max()
    if not np.all(np.isfinite(shifted)):
        # The division overflowed float32 (temperatures below ~1e-37), where
        # llama.cpp's own softmax turns to NaN: give the limit instead.
        shifted = (kept.astype(np.float64) - float(kept.max())) / temperature
    weights = np.exp(shifted.astype(np.float64))
    final[order] = weights / weights.sum()


def _rest_weight(log_rest: float, reference: float) -> float:
    """The not-given tokens' mass in units of ``exp(logit - reference)``."""
    return math.exp(log_rest - reference) if log_rest > -math.inf else 0.0


def _expf(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """C's ``expf``: the exponential rounded to float32 (numpy's own float32
    exp may differ from glibc's in the last bit)."""
    return np.exp(x.astype(np.float64)).astype(_F32)


def _entropy_bits(p: npt.NDArray[np.float64]) -> float:
    nonzero = p[p > 0]
    return float(max(-(nonzero * np.log2(nonzero)).sum(), 0.0))


def _frozen(a: npt.NDArray[_T]) -> npt.NDArray[_T]:
    a.setflags(write=False)
    return a
