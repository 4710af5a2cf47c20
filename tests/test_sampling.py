"""The numpy sampler chain (localchat.core.engine.sampling) against llama.cpp's
own samplers, driven one by one through llama-cpp-python's low-level API on
the same logits: no model or context is needed for any of them.

llama.cpp breaks ties at a cut (top-k, top-p) with ``std::partial_sort``,
whose order among equal logits is its own; where ties straddle a cut the
comparisons are modulo ties: the same multiset of kept logits, and the same
tokens strictly above the lowest kept logit.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Sequence
from typing import Any

import llama_cpp as L
import numpy as np
import pytest

from localchat.core.engine.sampling import Sampled, apply_chain

TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
STAGES = ("top_k", "top_p", "min_p")
VOCAB_128K = 128_256


def llama_run(
    ids: np.ndarray,
    logits: np.ndarray,
    recent: Sequence[int],
    *,
    temperature: float,
    top_k: int,
    top_p: float,
    min_p: float,
    repeat_penalty: float,
    penalty_last_n: int = 64,
) -> tuple[dict[str, np.ndarray], int]:
    """llama-cpp-python 0.3.36's chain (``Llama._init_sampler``), one sampler
    at a time: the candidate array after each stage, and the selected index."""
    buf = np.zeros(ids.size, dtype=TOKEN_DATA)
    buf["id"] = ids
    buf["logit"] = logits
    arr = L.llama_token_data_array(
        data=buf.ctypes.data_as(L.llama_token_data_p), size=ids.size, selected=-1, sorted=False
    )
    penalties = L.llama_sampler_init_penalties(
        int(ids.max()) + 1, penalty_last_n, repeat_penalty, 0.0, 0.0
    )
    for token in recent:
        L.llama_sampler_accept(penalties, int(token))
    chain: list[tuple[str, Any]] = [("penalties", penalties)]
    if temperature == 0.0:
        chain.append(("greedy", L.llama_sampler_init_greedy()))
    elif temperature < 0.0:
        chain.append(("dist", L.llama_sampler_init_dist(1234)))
    else:
        chain += [
            ("top_k", L.llama_sampler_init_top_k(top_k)),
            ("typical", L.llama_sampler_init_typical(1.0, 1)),
            ("top_p", L.llama_sampler_init_top_p(top_p, 1)),
            ("min_p", L.llama_sampler_init_min_p(min_p, 1)),
            ("temp", L.llama_sampler_init_temp(temperature)),
            ("dist", L.llama_sampler_init_dist(1234)),
        ]
    after: dict[str, np.ndarray] = {}
    try:
        for name, sampler in chain:
            L.llama_sampler_apply(sampler, ctypes.byref(arr))
            view = np.ctypeslib.as_array(arr.data, shape=(arr.size,))
            after[name] = np.array(view, dtype=TOKEN_DATA)
    finally:
        for _, sampler in chain:
            L.llama_sampler_free(sampler)
    return after, int(arr.selected)


def assert_same_kept(mine: np.ndarray, theirs: np.ndarray, logit_of: dict[int, float]) -> None:
    """Same kept tokens, modulo which of a tie at the cut each kept."""
    mine_logits = np.sort([logit_of[int(t)] for t in mine])
    their_logits = np.sort([logit_of[int(t)] for t in theirs])
    np.testing.assert_array_equal(mine_logits, their_logits)
    if mine_logits.size:
        cut = mine_logits[0]
        above = {int(t) for t in mine if logit_of[int(t)] > cut}
        assert above == {int(t) for t in theirs if logit_of[int(t)] > cut}


def check_against_llama(
    ids: np.ndarray,
    logits: np.ndarray,
    recent: Sequence[int] = (),
    *,
    exact_ids: bool = False,
    **settings: Any,
) -> Sampled:
    """Runs both and compares every stage; returns ours."""
    settings.setdefault("repeat_penalty", 1.0)
    ours = apply_chain(ids, logits, recent, **settings)
    after, selected = llama_run(ids, logits, recent, **settings)

    # The penalty, bit for bit (float32 as llama.cpp computes it).
    penalised = after["penalties"]
    np.testing.assert_array_equal(penalised["id"], ids)
    np.testing.assert_array_equal(penalised["logit"], ours.penalized_logits.astype(np.float32))
    logit_of = dict(zip(ids.tolist(), penalised["logit"].tolist(), strict=True))

    temperature = settings["temperature"]
    if temperature == 0.0:
        assert ours.kept.sum() == 1
        assert ours.ids[ours.kept][0] == after["greedy"]["id"][selected]
        assert ours.final[ours.kept][0] == 1.0
        return ours
    if temperature < 0.0:
        np.testing.assert_allclose(ours.final, after["dist"]["p"], rtol=2e-6, atol=1e-9)
        return ours

    for i, stage in enumerate(STAGES):
        alive = ~np.isin(ours.removed_by, STAGES[: i + 1])
        if exact_ids:
            assert set(ours.ids[alive].tolist()) == set(after[stage]["id"].tolist()), stage
        else:
            assert_same_kept(ours.ids[alive], after[stage]["id"], logit_of)

    # The distribution the token is drawn from.
    dist = after["dist"]
    np.testing.assert_allclose(
        np.sort(ours.final[ours.kept])[::-1], np.sort(dist["p"])[::-1], rtol=2e-5, atol=1e-9
    )
    if exact_ids:
        p_of = dict(zip(dist["id"].tolist(), dist["p"].tolist(), strict=True))
        for token, p in zip(ours.ids.tolist(), ours.final.tolist(), strict=True):
            assert p == pytest.approx(p_of.get(token, 0.0), rel=2e-5, abs=1e-9)
    assert ours.final[~ours.kept].sum() == 0.0
    assert ours.final.sum() == pytest.approx(1.0)
    return ours


# --- llama.cpp's samplers, random logits ---------------------------------------------------

TEMPERATURES = (1e-3, 0.05, 0.3, 0.7, 1.0, 1.5, 3.0, 100.0)
TOP_KS = (0, -1, 1, 2, 5, 40, 100)
TOP_PS = (1.0, 0.999, 0.95, 0.9, 0.5, 0.1, 0.0)
MIN_PS = (0.0, 0.01, 0.05, 0.2, 0.9, 1.0)
PENALTIES = (1.0, 1.0, 1.1, 1.5, 0.8)
LAST_NS = (64, 64, 0, 3, -1)


@pytest.mark.parametrize("n", [1, 2, 5, 40, 300, 2000])
def test_random_logits_match_llama(n: int) -> None:
    rng = np.random.default_rng(n)
    for _ in range(150 if n < 1000 else 40):
        scale = rng.choice([0.3, 1.0, 3.0, 8.0])
        logits = (rng.normal(size=n) * scale + rng.normal() * 5).astype(np.float32)
        # Ids need not be 0..n-1 (top-N candidates are not).
        ids = np.sort(rng.choice(200_000, size=n, replace=False)) if rng.random() < 0.5 else None
        ids = np.arange(n) if ids is None else ids
        recent = rng.choice(ids, size=int(rng.integers(0, 100))).tolist() if n else []
        ks = (*TOP_KS, n, n + 3)
        check_against_llama(
            ids,
            logits,
            recent,
            exact_ids=True,
            temperature=float(rng.choice(TEMPERATURES)),
            top_k=int(rng.choice(ks)),
            top_p=float(rng.choice(TOP_PS)),
            min_p=float(rng.choice(MIN_PS)),
            repeat_penalty=float(rng.choice(PENALTIES)),
            penalty_last_n=int(rng.choice(LAST_NS)),
        )


def test_ties_match_llama_modulo_tie_breaking() -> None:
    rng = np.random.default_rng(7)
    levels = np.array([-2.0, -1.0, 0.0, 0.5, 1.0, 1.0, 2.0, 3.0], dtype=np.float32)
    for _ in range(300):
        n = int(rng.choice([3, 10, 50, 300, 1500]))
        logits = rng.choice(levels, size=n).astype(np.float32)
        ids = np.arange(n)
        check_against_llama(
            ids,
            logits,
            rng.choice(n, size=int(rng.integers(0, 20))).tolist(),
            temperature=float(rng.choice([0.0, *TEMPERATURES])),
            top_k=int(rng.choice([*TOP_KS, 3, 7, n])),
            top_p=float(rng.choice(TOP_PS)),
            min_p=float(rng.choice([*MIN_PS, 1.5])),
            repeat_penalty=float(rng.choice(PENALTIES)),
        )


def test_greedy_takes_the_first_of_tied_best() -> None:
    logits = np.array([1.0, 3.0, 0.5, 3.0, 3.0], dtype=np.float32)
    ours = check_against_llama(
        np.arange(5), logits, temperature=0.0, top_k=40, top_p=0.95, min_p=0.05
    )
    assert ours.ids[ours.kept].tolist() == [1]
    assert set(ours.removed_by[~ours.kept].tolist()) == {"greedy"}


def test_greedy_after_penalty() -> None:
    logits = np.array([2.0, 1.9, -3.0], dtype=np.float32)
    ours = check_against_llama(
        np.arange(3),
        logits,
        [0],
        temperature=0.0,
        top_k=40,
        top_p=0.95,
        min_p=0.05,
        repeat_penalty=1.1,
    )
    assert ours.ids[ours.kept].tolist() == [1]


def test_negative_temperature_is_dist_over_everything() -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(size=50).astype(np.float32)
    ours = check_against_llama(
        np.arange(50),
        logits,
        [1, 2, 2],
        temperature=-1.0,
        top_k=1,
        top_p=0.1,
        min_p=0.5,
        repeat_penalty=1.3,
    )
    assert ours.kept.all()


@pytest.mark.parametrize("n", range(2, 21))
def test_top_p_exactly_on_a_cumulative_boundary(n: int) -> None:
    """n equal candidates: each has p = 1/n, and top-p i/n lands on a
    cumulative sum, where float32 rounding decides (as in llama.cpp)."""
    logits = np.zeros(n, dtype=np.float32)
    for i in range(n + 1):
        for k in (0, n):
            ours = check_against_llama(
                np.arange(n), logits, temperature=0.8, top_k=k, top_p=i / n, min_p=0.0
            )
            assert 1 <= ours.kept.sum() <= n


def test_top_p_float32_decides_the_boundary() -> None:
    """Ten equal candidates at top-p 0.7: the float32 cumulative sum after 7
    is 0.70000005 >= float32(0.7), so llama.cpp keeps 7, not 8."""
    ours = check_against_llama(
        np.arange(10), np.zeros(10, np.float32), temperature=1.0, top_k=0, top_p=0.7, min_p=0.0
    )
    assert ours.kept.sum() == 7


def test_min_p_exactly_on_its_threshold() -> None:
    logits = np.array([0.0, math.log(0.5), math.log(0.25), -30.0], dtype=np.float32)
    for min_p in (0.5, 0.25, 0.2500001, 0.49999, 1.0, 1.5):
        for k in (0, 4):
            check_against_llama(
                np.arange(4),
                logits,
                exact_ids=True,
                temperature=1.0,
                top_k=k,
                top_p=1.0,
                min_p=min_p,
            )
    kept = apply_chain(
        np.arange(4), logits, temperature=1.0, top_k=0, top_p=1, min_p=0.5, repeat_penalty=1.0
    ).kept
    assert kept.tolist() == [True, True, False, False]


def test_penalty_sign_rule_and_window_match_llama() -> None:
    logits = np.array([2.0, -2.0, 0.0, 1.0, 3.0, -0.5], dtype=np.float32)
    # Token 3 falls out of the last-4 window; 0, 1, 2 and 5 are penalised.
    recent = [3, 3, 0, 1, 2, 5]
    ours = check_against_llama(
        np.arange(6),
        logits,
        recent,
        exact_ids=True,
        temperature=0.7,
        top_k=0,
        top_p=1.0,
        min_p=0.0,
        repeat_penalty=1.5,
        penalty_last_n=4,
    )
    assert ours.penalty_hit.tolist() == [True, True, True, False, False, True]
    np.testing.assert_allclose(
        ours.penalized_logits, [2 / 1.5, -3.0, 0.0, 1.0, 3.0, -0.75], rtol=1e-6
    )
    assert (ours.removed_by == "").all()  # the penalty removes nothing


@pytest.mark.parametrize(
    "settings",
    [
        dict(top_k=0, top_p=0.9, min_p=0.05, temperature=0.8),
        dict(top_k=0, top_p=0.95, min_p=0.0, temperature=1.0),
        dict(top_k=0, top_p=1.0, min_p=0.02, temperature=1.3),
        dict(top_k=0, top_p=1.0, min_p=0.0, temperature=0.5),
        dict(top_k=500, top_p=0.95, min_p=0.0, temperature=0.7),
        dict(top_k=40, top_p=0.95, min_p=0.05, temperature=0.7),
        dict(top_k=40, top_p=0.95, min_p=0.05, temperature=0.0),
    ],
)
@pytest.mark.parametrize("shape", ["peaked", "flat"])
def test_128k_vocabulary_matches_llama(settings: dict[str, Any], shape: str) -> None:
    """A whole 128k vocabulary: llama.cpp's bucket sort (k > 128) and its
    adaptive top-p sort (unsorted, > 1024 candidates) take other paths."""
    rng = np.random.default_rng(128)
    scale = 4.0 if shape == "peaked" else 0.3
    logits = (rng.normal(size=VOCAB_128K) * scale).astype(np.float32)
    recent = rng.integers(0, VOCAB_128K, size=80).tolist()
    ours = check_against_llama(
        np.arange(VOCAB_128K), logits, recent, repeat_penalty=1.1, **settings
    )
    assert ours.complete


# --- the top-N mode ------------------------------------------------------------------------


def top_n(full_logits: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The top n candidates of a vocabulary, and the probability mass of the rest."""
    order = np.argsort(-full_logits, kind="stable")[:n]
    shifted = full_logits.astype(np.float64) - float(full_logits.max())
    lse = math.log(float(np.exp(shifted).sum()))
    return order, full_logits[order], 1.0 - float(np.exp(shifted[order] - lse).sum())


@pytest.mark.parametrize("seed", range(6))
def test_top_40_with_rest_agrees_with_the_whole_vocabulary(seed: int) -> None:
    rng = np.random.default_rng(seed)
    vocab = 32_000 if seed % 2 else VOCAB_128K
    full_logits = (rng.normal(size=vocab) * 2.0).astype(np.float32)
    # A confident position: a few clear leaders.
    full_logits[rng.choice(vocab, size=8, replace=False)] += rng.uniform(6, 12, size=8).astype(
        np.float32
    )
    ids, logits, rest = top_n(full_logits, 40)
    recent = rng.choice(ids[:10], size=5).tolist()  # penalised tokens among the top 40
    compared = 0
    for top_k in (0, 1, 10, 40):
        for top_p in (0.5, 0.8, 0.95, 0.99, 1.0):
            for min_p in (0.0, 0.05, 0.1):
                for temperature in (0.0, 0.3, 0.8, 1.5):
                    settings: dict[str, Any] = dict(
                        temperature=temperature,
                        top_k=top_k,
                        top_p=top_p,
                        min_p=min_p,
                        repeat_penalty=1.2,
                    )
                    full = apply_chain(np.arange(vocab), full_logits, recent, **settings)
                    part = apply_chain(ids, logits, recent, rest=rest, **settings)
                    np.testing.assert_allclose(part.raw, full.raw[ids], rtol=1e-6, atol=1e-12)
                    np.testing.assert_allclose(
                        part.penalized, full.penalized[ids], rtol=1e-6, atol=1e-12
                    )
                    if not np.isin(np.flatnonzero(full.kept), ids).all():
                        assert not part.complete, settings  # it must say so
                        continue
                    # A token the penalty pushed below the 40th raw logit
                    # may rank below tokens not given: then the real top-k
                    # holds some of those instead, which the 40 cannot tell.
                    ranked = part.penalized_logits >= float(logits.min())
                    if not part.complete or (top_k > 0 and top_k > ranked.sum()):
                        continue
                    compared += 1
                    assert part.removed_by.tolist() == full.removed_by[ids].tolist(), settings
                    np.testing.assert_allclose(part.final, full.final[ids], rtol=1e-6, atol=1e-12)
                    assert part.entropy_final == pytest.approx(full.entropy_final, abs=1e-9)
    assert compared > 120


def test_top_n_with_top_k_at_most_n_is_exact_even_when_flat() -> None:
    """top-k <= N cuts every token not given, however flat the distribution."""
    rng = np.random.default_rng(11)
    full_logits = (rng.normal(size=50_000) * 0.2).astype(np.float32)
    ids, logits, rest = top_n(full_logits, 40)
    for top_k in (5, 40):
        settings: dict[str, Any] = dict(
            temperature=0.7, top_k=top_k, top_p=0.9, min_p=0.05, repeat_penalty=1.0
        )
        full = apply_chain(np.arange(full_logits.size), full_logits, **settings)
        part = apply_chain(ids, logits, rest=rest, **settings)
        assert part.complete
        assert part.removed_by.tolist() == full.removed_by[ids].tolist()
        np.testing.assert_allclose(part.final, full.final[ids], rtol=1e-6)


def test_top_n_says_when_tokens_not_given_survive() -> None:
    rng = np.random.default_rng(12)
    full_logits = (rng.normal(size=50_000) * 0.2).astype(np.float32)
    ids, logits, rest = top_n(full_logits, 40)
    part = apply_chain(
        ids, logits, temperature=0.7, top_k=0, top_p=0.95, min_p=0.0, repeat_penalty=1.0, rest=rest
    )
    assert not part.complete
    assert part.kept.all()
    assert part.raw.sum() == pytest.approx(1 - rest)
    # Without rest the 40 are taken for the whole vocabulary.
    alone = apply_chain(
        ids, logits, temperature=0.7, top_k=0, top_p=0.95, min_p=0.0, repeat_penalty=1.0
    )
    assert alone.complete
    assert alone.raw.sum() == pytest.approx(1.0)
    assert alone.kept.sum() < 40


def test_top_n_with_top_k_above_n_keeps_at_least_as_many() -> None:
    """With top-k > N all the rest is assumed to survive top-k, so top-p
    counts a larger denominator and never keeps fewer of the given tokens."""
    rng = np.random.default_rng(13)
    for _ in range(30):
        full_logits = (rng.normal(size=20_000) * rng.uniform(0.5, 3)).astype(np.float32)
        ids, logits, rest = top_n(full_logits, 20)
        settings: dict[str, Any] = dict(
            temperature=1.0,
            top_k=40,
            top_p=float(rng.uniform(0.3, 0.99)),
            min_p=0.0,
            repeat_penalty=1.0,
        )
        full = apply_chain(np.arange(full_logits.size), full_logits, **settings)
        part = apply_chain(ids, logits, rest=rest, **settings)
        assert part.kept.sum() >= full.kept[ids].sum()


# --- the result itself ---------------------------------------------------------------------


def test_result_fields() -> None:
    logits = np.log(np.array([0.25, 0.25, 0.25, 0.25], dtype=np.float64)).astype(np.float32)
    s = apply_chain(
        [10, 11, 12, 13], logits, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.0
    )
    assert s.entropy_raw == pytest.approx(2.0)  # bits
    assert s.entropy_final == pytest.approx(2.0)
    assert s.ids.tolist() == [10, 11, 12, 13]
    np.testing.assert_allclose(s.raw, 0.25)
    with pytest.raises(ValueError):
        s.final[0] = 1.0  # read-only
    one = apply_chain(
        [5, 6], [3.0, 1.0], temperature=0.0, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.0
    )
    assert one.final.tolist() == [1.0, 0.0]
    assert one.entropy_final == 0.0
    assert one.removed_by.tolist() == ["", "greedy"]


def test_stage_names() -> None:
    logits = np.array([5.0, 4.0, 3.0, 0.0, -1.0, -9.0], dtype=np.float32)
    s = apply_chain(
        np.arange(6), logits, temperature=1.0, top_k=5, top_p=0.995, min_p=0.2, repeat_penalty=1.0
    )
    assert s.removed_by.tolist() == ["", "", "min_p", "min_p", "top_p", "top_k"]


def test_tiny_temperatures_stay_finite() -> None:
    logits = np.array([30.0, 29.999, 10.0], dtype=np.float32)
    for t in (1e-6, 1e-30, 1e-40, 1e-300):
        s = apply_chain(
            np.arange(3), logits, temperature=t, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.0
        )
        assert np.isfinite(s.final).all()
        assert s.final[0] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "ids, logits, rest",
    [([], [], None), ([1, 2], [1.0], None), ([1], [math.inf], None), ([1], [0.0], 1.0)],
)
def test_bad_input(ids: list[int], logits: list[float], rest: float | None) -> None:
    with pytest.raises(ValueError):
        apply_chain(
            ids,
            logits,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            min_p=0.0,
            repeat_penalty=1.0,
            rest=rest,
        )
