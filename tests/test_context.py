"""Context planning: who drops out when a conversation outgrows the window."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from localchat.core.chat.context import CUT_NOTICE, ContextOverflow, plan
from localchat.core.engine.client import Engine
from localchat.core.engine.protocol import Message


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
