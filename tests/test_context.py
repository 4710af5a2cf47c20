"""Context planning: who drops out when a conversation outgrows the window."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from localchat.core.chat.context import (
    CUT_NOTICE,
    ContextOverflow,
    Policy,
    plan,
    reply_reserve,
)
from localchat.core.engine.client import Engine
from localchat.core.engine.protocol import Message
from localchat.core.params import GenerationSettings
from localchat.testing.tiny_models import write_llama_gguf


def words(messages: Sequence[Message]) -> int:
    """A stand-in tokenizer: 4 tokens of template per message, one per word."""
    return sum(4 + len(m["content"].split()) for m in messages)


def conversation(turns: int, size: int = 10) -> list[Message]:
    msgs: list[Message] = [{"role": "system", "content": "be kind " * 3}]
    for i in range(turns):
        msgs.append({"role": "user", "content": f"question{i} " * size})
        msgs.append({"role": "assistant", "content": f"answer{i} " * size})
    msgs.append({"role": "user", "content": "last question " * 3})
    return msgs


def test_everything_fits_nothing_dropped() -> None:
    msgs = conversation(2)
    p = plan(msgs, words, n_ctx=1000, reserve=100)
    assert p.messages == tuple(msgs) and p.dropped == () and p.prompt_tokens == words(msgs)


def test_rolling_drops_the_oldest_exchanges_and_keeps_the_system_prompt() -> None:
    msgs = conversation(10)  # 10 exchanges of 2 x 14 tokens, plus system and last question
    p = plan(msgs, words, n_ctx=160, reserve=40)
    assert p.messages[0]["role"] == "system"
    assert p.messages[-1] == msgs[-1]
    assert p.prompt_tokens + 40 <= 160
    # Whole exchanges, oldest first: the kept ones are the most recent.
    assert p.dropped == tuple(range(1, 1 + len(p.dropped)))
    assert len(p.dropped) % 2 == 0
    assert p.messages[1]["role"] == "user"
    # And no more than needed: one exchange fewer dropped would not fit.
    fewer = [msgs[0], *msgs[len(p.dropped) - 1 :]]
    assert words(fewer) + 40 > 160


@pytest.mark.parametrize("policy", ["rolling", "keep-start"])
def test_trimming_goes_in_chunks_that_later_turns_agree_on(policy: Policy) -> None:
    """The cut moves only when the old one no longer fits, and then to the next
    chunk boundary, so the next turns mostly fit without moving it: the engine
    shifts its cache about once per chunk, not every turn."""

    def by_bytes(messages: Sequence[Message]) -> int:  # about what English costs
        return sum(4 + len(m["content"].encode()) // 4 for m in messages)

    budget, chunk = 340, 85
    msgs: list[Message] = [{"role": "system", "content": "be kind " * 3}]
    chunked: list[tuple[int, ...]] = []
    minimal: list[tuple[int, ...]] = []
    for i in range(60):
        msgs.append({"role": "user", "content": f"question{i} " * (5 + i % 7)})
        p = plan(msgs, by_bytes, n_ctx=budget + 60, reserve=60, policy=policy, chunk=chunk)
        assert p.prompt_tokens <= budget
        assert p.messages[0] == msgs[0] and p.messages[-1] == msgs[-1]
        least = plan(msgs, by_bytes, n_ctx=budget + 60, reserve=60, policy=policy).dropped
        assert set(least) <= set(p.dropped)
        if chunked and p.dropped != chunked[-1]:
            assert not set(least) <= set(chunked[-1])  # the old cut no longer fit
        chunked.append(p.dropped)
        minimal.append(least)
        msgs.append({"role": "assistant", "content": f"answer{i} " * (3 + i % 5)})

    def changes(cuts: list[tuple[int, ...]]) -> int:
        return sum(a != b for a, b in itertools.pairwise(cuts))

    assert chunked[0] == () and chunked[-1]
    for a, b in itertools.pairwise(chunked):  # out of view stays out of view
        assert set(a) <= set(b)
    assert changes(chunked) < changes(minimal) * 0.75


def test_keep_start_keeps_the_first_exchange() -> None:
    msgs = conversation(10)
    p = plan(msgs, words, n_ctx=160, reserve=40, policy="keep-start")
    assert p.messages[:3] == tuple(msgs[:3])  # system, first question, first answer
    assert p.messages[-1] == msgs[-1]
    assert 1 not in p.dropped and 2 not in p.dropped
    assert p.prompt_tokens + 40 <= 160


def test_stop_refuses_and_says_by_how_much() -> None:
    msgs = conversation(10)
    with pytest.raises(ContextOverflow) as err:
        plan(msgs, words, n_ctx=160, reserve=40, policy="stop")
    excess = words(msgs) + 40 - 160
    assert err.value.excess == excess
    assert f"{excess} tokens over the 160-token context" in str(err.value)


def test_a_message_too_big_alone_is_cut_with_a_notice() -> None:
    msgs: list[Message] = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": " ".join(f"w{i}" for i in range(500))},
    ]
    p = plan(msgs, words, n_ctx=200, reserve=50)
    assert p.cut == 1
    assert p.messages[-1]["content"].endswith(CUT_NOTICE)
    assert p.messages[-1]["content"].startswith("w0 w1 w2")
    assert p.prompt_tokens <= 150 and p.prompt_tokens >= 140  # as much as fits


@pytest.mark.parametrize("model", ["llama3_model", "phi3_model", "mistral_model"])
@pytest.mark.parametrize("policy", ["rolling", "keep-start"])
def test_counts_are_exactly_what_llama_cpp_evaluates(
    model: str, policy: str, request: pytest.FixtureRequest
) -> None:
    path: Path = request.getfixturevalue(model)
    msgs = conversation(12, size=15)
    with Engine() as engine:
        engine.load(path)

        def count(m: Sequence[Message]) -> int:
            return engine.render(m).n_tokens

        full = count(msgs)
        n_ctx, reserve = 512, 64
        assert full + reserve > n_ctx  # it does not fit as it is
        p = plan(msgs, count, n_ctx=n_ctx, reserve=reserve, policy=policy)
        rendered = engine.render(p.messages)
        assert p.prompt_tokens == rendered.n_tokens
        assert p.prompt_tokens + reserve <= n_ctx
        assert p.messages[0]["role"] == "system" and p.messages[-1] == msgs[-1]
        assert p.messages[1]["role"] == "user"  # alternation kept: templates demand it
        # And it is what the engine evaluates when the model answers.
        stream = engine.chat(list(p.messages))
        stream.text()
        assert stream.result is not None
        assert stream.result.prompt_tokens == p.prompt_tokens


def test_the_engine_reports_what_the_next_prompt_will_cost(llama3_model: Path) -> None:
    """``Engine.plan`` (the window's context meter) tells exactly what a chat
    sent now would evaluate and leave out, without generating."""
    msgs = conversation(12, size=15)
    s = GenerationSettings(ctx=512, max_tokens=64, temperature=0.0)
    with Engine() as engine:
        engine.load(llama3_model, s)
        report = engine.plan(msgs, s)
        assert report.n_ctx == 512 and report.reserve == 64
        assert report.dropped and report.dropped[0] == 1  # the system prompt stays
        assert report.prompt_tokens + report.reserve + report.free == 512
        stream = engine.chat(msgs, s)
        stream.text()
        assert stream.result is not None
        assert stream.result.prompt_tokens == report.prompt_tokens
        assert stream.result.dropped == report.dropped
        # A short chat: nothing dropped, the free room is what is left.
        short = engine.plan(msgs[-1:], s)
        assert short.dropped == () and short.free == 512 - 64 - short.prompt_tokens
        # Under "stop", nothing is dropped and the excess is counted exactly.
        stop = engine.plan(msgs, s.replace(overflow="stop"))
        assert stop.dropped == ()
        assert stop.excess == engine.render(msgs).n_tokens - (512 - 64)
        # The settings' system prompt is the engine's to add: indexes stay the caller's.
        without_system = msgs[1:]
        with_setting = engine.plan(without_system, s.replace(system_prompt="be kind " * 3))
        assert with_setting.dropped == tuple(i - 1 for i in report.dropped)


CONTINUATION_BYTES = range(5 + 0x80, 5 + 0xC0)  # the byte vocabulary's <0x80>..<0xBF>


def broken_utf8_only(name: str, array: np.ndarray) -> np.ndarray:
    """Let the model write only lone UTF-8 continuation bytes: every one is
    invalid, stored as U+FFFD, which the tokenizer spells with three tokens."""
    if name == "output.weight":
        keep = np.zeros(len(array), dtype=bool)
        keep[list(CONTINUATION_BYTES)] = True
        array = np.where(keep[:, None], array, 0.0)
    return array


@pytest.mark.parametrize("words", [22, 26, 30])  # before the fix: keep-start 22, rolling 30
@pytest.mark.parametrize("policy", ["rolling", "keep-start"])
def test_a_long_chat_of_broken_text_never_reads_its_whole_prompt_again(
    tmp_path: Path, policy: Policy, words: int
) -> None:
    """Issue 18.5's shape: a byte-level model writing invalid UTF-8 (the
    stored reply spells each byte U+FFFD, three tokens where the model wrote
    one), messages of some 25 words, 12-token replies, greedy, a 2048-token window. The
    engine counts an old reply with the model's own tokens while the cache
    holds it and afresh once it is gone, so the same messages cost different
    counts from turn to turn. Once the window is full, messages that dropped
    out stay out, every turn fits, and no turn evaluates more than its new
    tokens and the template's (a dropped message brought back into view meant
    the whole prompt again)."""
    model = write_llama_gguf(
        tmp_path / "broken.gguf", logit_scale=40.0, tensor_hook=broken_utf8_only
    )
    s = GenerationSettings(temperature=0.0, max_tokens=12, ctx=2048, overflow=policy)
    names = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
    messages: list[Message] = []
    evaluated: list[int] = []
    out_of_view: set[int] = set()
    with Engine() as engine:
        engine.load(model, s)
        for turn in range(40):
            text = " ".join(names[(turn * 7 + i * i) % len(names)] for i in range(words))
            messages.append({"role": "user", "content": text})
            stream = engine.chat(messages, s)
            reply = stream.text()
            r = stream.result
            assert r is not None and "\ufffd" in reply
            evaluated.append(r.evaluated_tokens)
            assert out_of_view <= set(r.dropped), turn  # out of view stays out of view
            out_of_view = set(r.dropped)
            if turn:
                assert r.evaluated_tokens <= 2 * max(evaluated[1:3]), (turn, evaluated)
            messages.append({"role": "assistant", "content": reply})
    assert out_of_view  # the window did fill


def test_the_reply_reserve_leaves_a_small_context_room_for_the_chat() -> None:
    """The reserve is the max reply tokens, at most a quarter of the context:
    4096 keeps the default 1024, the demo's 256 keeps 64 (not 128)."""
    default = GenerationSettings().max_tokens
    assert reply_reserve(default, 4096) == default == 1024
    assert reply_reserve(default, 256) == 64
    assert reply_reserve(32, 256) == 32
    assert reply_reserve(default, 2) == 1


DEMO = Path(__file__).resolve().parents[1] / "localchat" / "assets" / "localchat-demo.gguf"


@pytest.mark.skipif(not DEMO.is_file(), reason="the demo model is not in this checkout")
def test_the_demos_first_exchange_stays_in_view_at_turn_two() -> None:
    """With the demo's 256-token context and the default settings, a second
    short question after a reply of a hundred-odd tokens (the demo's answers
    run long at its default temperature) still shows the model the first
    exchange: with half the context held for the reply, it dropped out."""
    answer = (
        "Return a new path by joining one or more path components. The result "
        "is the concatenation of path and the other members, with exactly one "
        "directory separator following each non-empty part except the last. "
        "If a component is an absolute path, all previous components are thrown "
        "away and joining continues from the absolute path component. On Windows, "
        "the drive is not reset when a rooted path component is encountered, "
        "and a drive letter starts the path anew."
    )
    msgs: list[Message] = [
        {"role": "user", "content": "What does the function os.path.join do?"},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "What does the module pathlib do?"},
    ]
    s = GenerationSettings()
    with Engine() as engine:
        engine.load(DEMO, s)
        report = engine.plan(msgs, s)
        assert report.n_ctx == 256 and report.reserve == 64
        assert report.prompt_tokens > 256 - 128  # it would not have fitted before
        assert report.dropped == () and report.excess == 0
