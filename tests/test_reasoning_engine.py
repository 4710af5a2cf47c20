"""Issue 21 in the engine: tiny random-weight models under real reasoning
templates, with vocabularies that spell each family's markers. A random model
under a template whose prompt opens the thinking never closes it by itself,
which makes the thinking budget testable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from localchat.core.engine.client import Engine
from localchat.core.engine.protocol import Message, Piece, RenderChat
from localchat.core.engine.worker.reply_text import ReplyText
from localchat.core.params import GenerationSettings
from localchat.testing.tiny_models import fixture_template, write_llama_gguf
from tests.test_engine import _in_process_worker

R1 = "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B"
OURS = Path(__file__).parent / "fixtures" / "templates"
HARMONY_TOKENS = [(t, 3) for t in ("<|start|>", "<|channel|>", "<|message|>", "<|end|>")] + [
    ("<|return|>", 3),
    ("<|call|>", 3),
    ("<|constrain|>", 3),
]
HI: list[Message] = [{"role": "user", "content": "hello world"}]


def settings(**changes: Any) -> GenerationSettings:
    return GenerationSettings(**{"temperature": 0.0, "max_tokens": 40, **changes})


@pytest.fixture(scope="module")
def r1_no_switch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The R1 distill's template as first published: no switch to turn thinking off."""
    switch = "{% if not enable_thinking %}{{- '</think>' -}}{% endif %}"
    text = fixture_template(R1).replace(switch, "")
    assert "enable_thinking" not in text
    path = tmp_path_factory.mktemp("r1") / "r1-no-switch.gguf"
    return write_llama_gguf(path, chat_template=text, suppress_special=True, ascii_only=True)


@pytest.fixture(scope="module")
def qwen35_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real Qwen BPE vocabulary with <think> and </think> added as single
    user-defined tokens, as Qwen3's GGUFs carry them (the shared fixture's
    vocabulary lacks them), and Qwen3.5's template."""
    path = tmp_path_factory.mktemp("qwen") / "qwen35-tiny.gguf"
    return write_llama_gguf(
        path,
        vocab="qwen35",
        n_embd=32,
        n_head=2,
        n_head_kv=1,
        n_ff=64,
        chat_template=fixture_template("Qwen3.5-4B"),
        added_tokens=[("<think>", 4), ("</think>", 4)],
        suppress_special=True,
    )


@pytest.fixture(scope="module")
def harmony_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """gpt-oss's template, with its harmony tokens added to a byte-level BPE
    vocabulary (gpt-oss's own is BPE: no space is put before a word after a
    special token)."""
    path = tmp_path_factory.mktemp("oss") / "gpt-oss-tiny.gguf"
    return write_llama_gguf(
        path,
        vocab="llama-bpe",
        n_embd=32,
        n_head=2,
        n_head_kv=1,
        n_ff=64,
        chat_template=(OURS / "openai-gpt-oss-120b.jinja").read_text(encoding="utf-8"),
        added_tokens=HARMONY_TOKENS,
        eos_token="<|return|>",
        suppress_special=True,
    )


def run(engine: Engine, messages: list[Message], s: GenerationSettings) -> tuple[Any, list[Piece]]:
    stream = engine.chat(messages, s)
    pieces = list(stream.pieces())
    assert stream.result is not None
    return stream.result, pieces


def test_a_prompt_that_opens_the_thinking_streams_thinking(engine: Engine, r1_model: Path) -> None:
    loaded = engine.load(str(r1_model), settings(ctx=1024))
    assert loaded.reasoning == "think"
    assert loaded.reasoning_controls == ("thinking", "thinking_switch")
    result, pieces = run(engine, HI, settings(thinking="on"))
    # A random model never closes the block: the reply is all thinking, and
    # says why it ended.
    assert result.reasoning and result.reply == ""
    assert result.finish_reason == "length"
    assert result.reasoning_tokens == result.completion_tokens == 40
    assert result.content_tokens == 0 and result.thinking_ms > 0
    assert all(p.reasoning for p in pieces)
    assert "".join(p.text for p in pieces) == result.reasoning
    assert "<think>" not in result.reasoning and "</think>" not in result.reasoning


def test_the_budget_closes_the_thinking_and_an_answer_follows(
    engine: Engine, r1_model: Path
) -> None:
    engine.load(str(r1_model), settings(ctx=1024))
    result, pieces = run(engine, HI, settings(thinking="on", thinking_budget=12, max_tokens=60))
    assert result.reasoning and result.reply  # thinking, then an answer
    assert "</think>" not in result.reasoning + result.reply
    # The thinking's tokens: the budget, then the engine's closing marker
    # (the blank line after it is the answer's).
    closing = len(engine.tokenize("\n</think>", special=True))
    assert result.reasoning_tokens == 12 + closing
    assert result.content_tokens == result.completion_tokens - result.reasoning_tokens > 0
    kinds = [p.reasoning for p in pieces]
    assert kinds == sorted(kinds, reverse=True)  # thinking first, then the answer only
    assert "".join(p.text for p in pieces if not p.reasoning) == result.reply


def test_off_reaches_the_template_or_the_engine_closes_the_thinking(
    engine: Engine, r1_model: Path, r1_no_switch: Path
) -> None:
    engine.load(str(r1_model), settings(ctx=1024))
    result, _ = run(engine, HI, settings(thinking="off"))
    assert result.reasoning == "" and result.reasoning_tokens == 0 and result.reply
    prompt = engine.render(HI).text  # the switch reached the template
    assert prompt.endswith("<think>\n</think>")
    # A template with no switch: off is the engine closing the block at once.
    loaded = engine.load(str(r1_no_switch), settings(ctx=1024))
    assert loaded.reasoning_controls == ("thinking",)
    result, _ = run(engine, HI, settings(thinking="off"))
    assert result.reasoning == "" and result.reply
    assert result.reasoning_tokens == len(engine.tokenize("\n</think>", special=True))


def test_a_follow_up_keeps_the_cache_and_leaves_old_thinking_out(
    engine: Engine, r1_model: Path
) -> None:
    """The next turn sends the thinking apart (``reasoning``); the R1 template
    drops it from history, and the prompt's start is reused from the cache."""
    engine.load(str(r1_model), settings(ctx=2048))
    s = settings(thinking="on", thinking_budget=8, max_tokens=30)
    first, _ = run(engine, HI, s)
    assert first.reasoning and first.reply
    thought = first.reasoning + " (and a secret aside)"
    follow: list[Message] = [
        *HI,
        {"role": "assistant", "content": first.reply, "reasoning": thought},
        {"role": "user", "content": "and then"},
    ]
    shown = engine.render(follow).text
    assert "secret aside" not in shown and first.reply.strip() in shown
    first_prompt = engine.tokenize(engine.render(HI).text, special=True)
    second_prompt = engine.tokenize(shown, special=True)
    common = next(
        (i for i, (a, b) in enumerate(zip(first_prompt, second_prompt, strict=False)) if a != b),
        min(len(first_prompt), len(second_prompt)),
    )
    second, _ = run(engine, follow, s)
    # All the two prompts share came from the cache (up to the generation
    # prompt's "<think>", which history does not repeat): only the reply as
    # the template shows it, the new message and the generation prompt
    # were evaluated.
    assert common >= len(first_prompt) - len(engine.tokenize("<think>\n", special=True)) - 1
    assert second.prompt_tokens - second.evaluated_tokens == common


def test_real_marker_tokens_split_and_the_budget_writes_them(
    engine: Engine, qwen35_model: Path
) -> None:
    loaded = engine.load(str(qwen35_model), settings(ctx=1024))
    assert loaded.reasoning == "think" and "thinking_switch" in loaded.reasoning_controls
    assert len(engine.tokenize("</think>", special=True)) == 1  # one token in this vocabulary
    result, _ = run(engine, HI, settings(thinking="on", thinking_budget=6, max_tokens=30))
    closing = len(engine.tokenize("\n</think>", special=True))
    assert result.reasoning_tokens == 6 + closing
    assert "</think>" not in result.reply + result.reasoning
    on = engine.render(HI).text
    run(engine, HI, settings(thinking="off", max_tokens=2))
    off = engine.render(HI).text
    assert on.endswith("<think>\n") and off.endswith("<think>\n\n</think>\n\n")


def test_harmony_channels_split_token_by_token(harmony_model: Path) -> None:
    """gpt-oss's harmony markers are single special tokens; the split reads
    them token by token, whether llama.cpp shows their text in a plain
    reply (it does for <|channel|>, <|message|>, <|start|>) or not."""
    worker, _ = _in_process_worker(harmony_model)
    model = worker.model
    assert worker.loaded.reasoning == "harmony"
    assert worker.loaded.reasoning_controls == ("thinking", "reasoning_effort")
    assert model.thinking is not None
    for marker in ("<|start|>", "<|channel|>", "<|message|>", "<|end|>"):
        assert len(model.tokenizer.tokenize(marker, add_bos=False, special=True)) == 1
    text = (
        "<|channel|>analysis<|message|>The user says hello.<|end|>"
        "<|start|>assistant<|channel|>final<|message|>Hello there!"
    )
    tokens = model.tokenizer.tokenize(text, add_bos=False, special=True)
    pieces: list[Piece] = []
    reply = ReplyText(model.tokenizer, (), model.thinking, pieces.append)
    for t in tokens:
        reply.add(t)
    reply.finish()
    assert "".join(reply.thought) == "The user says hello."
    assert "".join(reply.answer) == "Hello there!"
    assert 0 < reply.reasoning_tokens < len(tokens)
    # The effort reaches the template.
    model.use(settings(reasoning_effort="high"))
    assert "Reasoning: high" in worker.handle(RenderChat(tuple(HI))).text  # type: ignore[union-attr]


def test_thinking_in_view_is_counted(engine: Engine, qwen35_model: Path) -> None:
    """Qwen3.5 keeps the thinking of the turn after the last question in the
    prompt, and drops older thinking: the count says which."""
    engine.load(str(qwen35_model), settings(ctx=1024))
    answered: list[Message] = [
        *HI,
        {"role": "assistant", "content": "Hi!", "reasoning": "The user greets me warmly."},
    ]
    kept = engine.plan(answered, settings())
    bare = engine.plan([*HI, {"role": "assistant", "content": "Hi!"}], settings())
    assert kept.thinking_tokens == kept.prompt_tokens - bare.prompt_tokens > 0
    later = engine.plan([*answered, {"role": "user", "content": "again"}], settings())
    assert later.thinking_tokens == 0  # an older turn's thinking is out of view


FAMILIES = [
    # (template, where, its marker tokens, family, a reply as the model writes it, split)
    (
        "Qwen-QwQ-32B",
        "shared",
        [("<think>", 4), ("</think>", 4)],
        "think",
        "The user says hi.\n</think>\n\nHello!",
        ("The user says hi.", "Hello!"),
    ),
    (
        "google-gemma-4-31B-it",
        "shared",
        [("<|channel>", 3), ("<channel|>", 3)],
        "channel",
        "<|channel>thought\nA greeting.<channel|>Hello!",
        ("A greeting.", "Hello!"),
    ),
    (
        "mistralai-Ministral-3-14B-Reasoning-2512",
        "ours",
        [("[THINK]", 3), ("[/THINK]", 3)],
        "think-brackets",
        "[THINK]Greet back.[/THINK]Hello!",
        ("Greet back.", "Hello!"),
    ),
    (
        "HuggingFaceTB-SmolLM3-3B",
        "ours",
        [("<think>", 4), ("</think>", 4)],
        "think",
        "<think>\nGreet back.\n</think>\nHello!",
        ("Greet back.", "Hello!"),
    ),
    (
        "unsloth-Apriel-1.5",
        "ours",
        [],
        "final-marker",
        "Here are my reasoning steps: greet.\n[BEGIN FINAL RESPONSE]\nHello![END FINAL RESPONSE]",
        ("Here are my reasoning steps: greet.", "Hello!"),
    ),
]


@pytest.mark.parametrize(("stem", "where", "added", "family", "written", "expected"), FAMILIES)
def test_each_family_splits_with_its_own_tokens(
    tmp_path: Path,
    stem: str,
    where: str,
    added: list[tuple[str, int]],
    family: str,
    written: str,
    expected: tuple[str, str],
) -> None:
    """A tiny model per template, its markers in a BPE vocabulary as the
    family ships them; the reply the model would write, token by token,
    through the engine's own split (starting inside where the prompt opens
    the thinking)."""
    source = (
        fixture_template(stem)
        if where == "shared"
        else (OURS / f"{stem}.jinja").read_text(encoding="utf-8")
    )
    path = write_llama_gguf(
        tmp_path / f"{stem}.gguf",
        vocab="llama-bpe",
        n_embd=16,
        n_head=2,
        n_head_kv=1,
        n_ff=32,
        chat_template=source,
        added_tokens=added,
    )
    worker, _ = _in_process_worker(path)
    model = worker.model
    assert worker.loaded.reasoning == family
    assert model.thinking is not None
    for marker, _kind in added:
        assert len(model.tokenizer.tokenize(marker, add_bos=False, special=True)) == 1
    model.use(settings(thinking="on"))
    inside = model.thinking.opens(model.options)
    tokens = model.tokenizer.tokenize(written, add_bos=False, special=True)
    pieces: list[Piece] = []
    reply = ReplyText(model.tokenizer, (), model.thinking, pieces.append, inside=inside)
    for t in tokens:
        reply.add(t)
    reply.finish()
    assert ("".join(reply.thought), "".join(reply.answer)) == expected
    assert [p.reasoning for p in pieces] == sorted((p.reasoning for p in pieces), reverse=True)
