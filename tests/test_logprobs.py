"""Issue 22: every generated token's log-probability and its rivals, as the
model gave them: a log-softmax of llama.cpp's own logits (temperature 1,
before any sampler), checked against llama-cpp-python with all logits kept."""

from __future__ import annotations

import ctypes
import math
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
import pytest

from localchat.core.engine.client import Engine
from localchat.core.engine.protocol import Message
from localchat.core.errors import SettingError
from localchat.core.params import GenerationSettings
from localchat.testing.tiny_models import write_llama_gguf

HI: list[Message] = [{"role": "user", "content": "hello world, tell me something"}]


@pytest.fixture(scope="module", params=["llama-spm", "llama-bpe"])
def vocab_model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 32k (SentencePiece) and a 128k (BPE) vocabulary."""
    path = tmp_path_factory.mktemp("lp") / f"{request.param}.gguf"
    return write_llama_gguf(
        path, vocab=request.param, n_embd=32, n_head=2, n_head_kv=1, n_ff=64, suppress_special=True
    )


def reference_logits(model: Path, prompt: list[int], reply: list[int]) -> list[np.ndarray]:
    """llama.cpp's logits for the whole sequence at once (all kept): row j
    is what reply token j was drawn from."""
    # An in-process worker of another test may have left its log callback
    # installed in this process: llama-cpp-python's own goes back first.
    llama_cpp.llama_log_set(llama_cpp._logger.llama_log_callback, ctypes.c_void_p(0))
    llm = llama_cpp.Llama(
        str(model), n_ctx=1024, logits_all=True, verbose=False, n_threads=1, n_batch=1024
    )
    try:
        llm.eval(prompt + reply[:-1])
        rows = []
        for j in range(len(reply)):
            rows.append(np.asarray(llm.scores[len(prompt) - 1 + j], dtype=np.float64))
        return rows
    finally:
        llm.close()


def test_logprobs_are_the_models_own(vocab_model: Path) -> None:
    with Engine() as engine:
        engine.load(str(vocab_model), GenerationSettings(ctx=1024, threads=1))
        s = GenerationSettings(temperature=0.8, seed=7, max_tokens=24)
        stream = engine.chat(HI, s, top_logprobs=5)
        reply = stream.text()
        result = stream.result
        assert result is not None and len(result.tokens) == result.completion_tokens == 24
        text = engine.render(HI).text
        prompt = engine.tokenize(text, special=True)
        if len(prompt) == result.prompt_tokens - 1:  # the engine adds the model's BOS
            prompt = engine.tokenize(text, add_bos=True, special=True)
        assert len(prompt) == result.prompt_tokens
    logits = reference_logits(vocab_model, prompt, [t.id for t in result.tokens])
    for token, raw in zip(result.tokens, logits, strict=True):
        row = raw - (raw.max() + np.log(np.exp(raw - raw.max()).sum()))  # log-softmax
        assert token.logprob == pytest.approx(row[token.id], abs=1e-3)
        # ... and the raw logit is recoverable (the penalty acts on it).
        assert token.logprob + token.lse == pytest.approx(raw[token.id], abs=1e-3)
        expected = np.argsort(-row, kind="stable")[:5]
        assert [c[0] for c in token.top] == list(expected) or all(  # ties may swap
            c[2] == pytest.approx(row[c[0]], abs=1e-3) for c in token.top
        )
        for cid, _text, lp in token.top:
            assert lp == pytest.approx(row[cid], abs=1e-3)
    assert "".join(t.text for t in result.tokens) == reply


def test_greedy_picks_the_top_candidate_and_the_list_is_a_distribution(
    engine: Engine, tiny_model: Path
) -> None:
    engine.load(str(tiny_model), GenerationSettings(ctx=512))
    stream = engine.chat(HI, GenerationSettings(temperature=0.0, max_tokens=16), top_logprobs=20)
    reply = stream.text()
    result = stream.result
    assert result is not None and result.tokens
    for t in result.tokens:
        assert t.top[0][0] == t.id and t.logprob == t.top[0][2]  # greedy: the most likely
        logprobs = [c[2] for c in t.top]
        assert logprobs == sorted(logprobs, reverse=True) and len(t.top) == 20
        assert sum(math.exp(lp) for lp in logprobs) <= 1 + 1e-6
        assert all(lp <= 0 for lp in logprobs)
    assert "".join(t.text for t in result.tokens) == reply


def test_texts_join_into_the_reply_across_split_characters_and_stops(
    engine: Engine, tmp_path: Path
) -> None:
    """A byte-level vocabulary writes characters a byte at a time: the
    character is in the token that completes it. A stop string cuts the
    tokens' texts where it cuts the reply."""
    model = write_llama_gguf(tmp_path / "bytes.gguf", suppress_special=True, seed=3)
    engine.load(str(model), GenerationSettings(ctx=512))
    s = GenerationSettings(temperature=1.5, seed=11, max_tokens=60)
    stream = engine.chat(HI, s, logprobs=True)
    reply = stream.text()
    result = stream.result
    assert result is not None
    assert "".join(t.text for t in result.tokens) == reply
    assert any(t.text == "" for t in result.tokens), "no character was split across tokens"
    assert all(t.top == () for t in result.tokens)  # logprobs only: no candidates
    stop = reply[len(reply) // 2 : len(reply) // 2 + 2]
    stream = engine.chat(HI, s, stop=[stop], logprobs=True)
    cut = stream.text()
    assert stream.result is not None and cut == reply[: reply.index(stop)]
    assert "".join(t.text for t in stream.result.tokens) == cut


def test_streamed_entries_follow_the_text_out(
    engine: Engine, tmp_path: Path, r1_model: Path
) -> None:
    """With stream_logprobs, a piece carries the entries of the answer's
    tokens whose text is out by then: never ahead of the text (a held
    stop string's start, a partial character), in order, the same as the
    result's, and none of the thinking's."""

    def check(stream: Any) -> None:
        out, sent = "", []
        for piece in stream.pieces():
            if not piece.reasoning:
                out += piece.text
            sent += piece.tokens
            assert "".join(t.text for t in sent) == out[: len("".join(t.text for t in sent))]
            assert len("".join(t.text for t in sent)) <= len(out)
        answer = [t for t in stream.result.tokens if not t.reasoning]
        assert sent, "nothing streamed"
        assert [(t.id, t.logprob, t.top) for t in sent] == [
            (t.id, t.logprob, t.top) for t in answer[: len(sent)]
        ]

    model = write_llama_gguf(tmp_path / "bytes.gguf", suppress_special=True, seed=3)
    engine.load(str(model), GenerationSettings(ctx=512))
    s = GenerationSettings(temperature=1.5, seed=11, max_tokens=60)
    reply = engine.chat(HI, s).text()
    stop = reply[len(reply) // 2 : len(reply) // 2 + 3]
    check(engine.chat(HI, s, stop=[stop], top_logprobs=2, stream_logprobs=True))
    engine.load(str(r1_model), GenerationSettings(ctx=512))
    thinking = GenerationSettings(temperature=1.0, seed=2, max_tokens=80)
    check(engine.chat(HI, thinking, top_logprobs=2, stream_logprobs=True))


def test_off_by_default_and_bounded(engine: Engine, tiny_model: Path) -> None:
    engine.load(str(tiny_model), GenerationSettings(ctx=512))
    stream = engine.chat(HI, GenerationSettings(max_tokens=4))
    stream.text()
    assert stream.result is not None and stream.result.tokens == ()
    with pytest.raises(SettingError, match="between 0 and 20"):
        engine.chat(HI, GenerationSettings(max_tokens=4), top_logprobs=21)


def test_the_cli_lists_the_tokens(home: Path, tiny_model: Path) -> None:
    import json

    from tests.test_cli import run

    done = run(
        "chat", "-m", str(tiny_model), "--prompt", "hello", "--json", "--top-logprobs", "3",
        "--temperature", "0", "--max-tokens", "12", home=home,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    turn = json.loads(done.stdout)
    tokens = turn["tokens"]
    assert len(tokens) == turn["completion_tokens"] and tokens
    assert "".join(t["text"] for t in tokens) == turn["reply"]
    for t in tokens:
        assert set(t) == {"id", "text", "logprob", "top"} and len(t["top"]) == 3
        assert t["top"][0]["id"] == t["id"]  # greedy
        assert [c["logprob"] for c in t["top"]] == sorted(
            (c["logprob"] for c in t["top"]), reverse=True
        )
    plain = run("chat", "-m", str(tiny_model), "--prompt", "hello", "--json", home=home)
    assert "tokens" not in json.loads(plain.stdout)  # off unless asked
    for bad, said in (
        (["--json", "--top-logprobs", "21"], "between 0 and 20"),
        (["--top-logprobs", "3"], "needs --json"),
    ):
        refused = run("chat", "-m", str(tiny_model), "--prompt", "hi", *bad, home=home)
        assert refused.returncode == 2 and said in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1


def test_a_reply_can_start_with_tokens_given(engine: Engine, tiny_model: Path) -> None:
    """ "Continue with this instead": the earlier reply's tokens up to a
    position, then another candidate; the model samples on from there."""
    engine.load(str(tiny_model), GenerationSettings(ctx=512))
    s = GenerationSettings(temperature=0.0, max_tokens=20)
    first = engine.chat(HI, s, top_logprobs=5)
    first.text()
    assert first.result is not None
    tokens = first.result.tokens
    at = 6
    other = tokens[at].top[1]  # the second most likely candidate there
    placed = [t.id for t in tokens[:at]] + [other[0]]
    again = engine.chat(HI, s, top_logprobs=5, prefix=placed)
    reply = again.text()
    assert again.result is not None
    before = "".join(t.text for t in tokens[:at])
    assert reply.startswith(before + other[1])  # the start kept byte for byte, then the choice
    new = again.result.tokens
    assert [t.id for t in new[: at + 1]] == placed and all(t.forced for t in new[: at + 1])
    assert not any(t.forced for t in new[at + 1 :]) and len(new) == 20
    with pytest.raises(Exception, match="not in this model's vocabulary"):
        engine.chat(HI, s, prefix=[10**9]).text()


def test_the_distribution_drawn_from_is_recorded(engine: Engine, tiny_model: Path) -> None:
    """The sampler chain replayed at each position: every sampled token is
    among the tokens it kept, their probabilities add up to 1, and greedy
    keeps only the one taken."""
    engine.load(str(tiny_model), GenerationSettings(ctx=512))
    s = GenerationSettings(
        temperature=1.3, top_k=5, top_p=0.9, min_p=0.1, repeat_penalty=1.3, seed=5, max_tokens=60
    )
    stream = engine.chat(HI, s, top_logprobs=5)
    stream.text()
    assert stream.result is not None
    for t in stream.result.tokens:
        kept = dict(t.sampled)
        assert t.id in kept, "a token was drawn from outside what the chain kept"
        assert 1 <= len(kept) <= 5 and sum(kept.values()) == pytest.approx(1.0, abs=1e-6)
        assert list(kept.values()) == sorted(kept.values(), reverse=True)
    greedy = engine.chat(HI, GenerationSettings(temperature=0.0, max_tokens=10), logprobs=True)
    greedy.text()
    assert greedy.result is not None
    assert all(t.sampled == ((t.id, 1.0),) for t in greedy.result.tokens)
