"""Issue 21: a reasoning model's format is found from its template and
vocabulary, and a reply splits into thinking and answer the same way however
the stream is cut. Pure: no model."""

from __future__ import annotations

from pathlib import Path

import pytest

from localchat.core.engine.reasoning import (
    ReasoningFormat,
    Splitter,
    detect,
    opens_thinking,
    split,
    template_kwargs,
)
from localchat.core.engine.template import ChatTemplate
from localchat.testing.tiny_models import fixtures_dir

OURS = Path(__file__).parent / "fixtures" / "templates"


def template(stem: str) -> ChatTemplate:
    for folder in (fixtures_dir() / "templates", OURS):
        path = folder / f"{stem}.jinja"
        if path.exists():
            return ChatTemplate(path.read_text(encoding="utf-8"), bos_token="<s>")
    raise FileNotFoundError(stem)


def fmt_of(stem: str, vocab: set[str] | None = None) -> ReasoningFormat | None:
    t = template(stem)
    return detect(t.source, vocab or set(), t.variables)


@pytest.mark.parametrize(
    ("stem", "family", "switch", "effort"),
    [
        ("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", "think", "enable_thinking", False),
        ("Qwen-QwQ-32B", "think", "enable_thinking", False),
        ("Qwen3.5-4B", "think", "enable_thinking", False),
        ("Qwen-Qwen3-0.6B", "think", "enable_thinking", False),
        ("HuggingFaceTB-SmolLM3-3B", "think", "enable_thinking", False),
        ("GLM-4.6", "think", "enable_thinking", False),
        ("ibm-granite-granite-3.3-2B-Instruct", "think", "thinking", False),
        ("google-gemma-4-31B-it", "channel", "enable_thinking", False),
        ("mistralai-Ministral-3-14B-Reasoning-2512", "think-brackets", None, False),
        ("openai-gpt-oss-120b", "harmony", None, True),
        ("unsloth-Apriel-1.5", "final-marker", None, False),
    ],
)
def test_the_format_and_its_controls_come_from_the_template(
    stem: str, family: str, switch: str | None, effort: bool
) -> None:
    fmt = fmt_of(stem)
    assert fmt is not None and fmt.family == family
    assert fmt.switch == switch and fmt.effort == effort
    assert ("thinking" in fmt.controls()) == (switch is not None)
    assert ("reasoning_effort" in fmt.controls()) == effort


@pytest.mark.parametrize(
    "stem",
    [
        "meta-llama-Llama-3.1-8B-Instruct",
        "Qwen-Qwen2.5-7B-Instruct",
        "google-gemma-2-2b-it",
        "ibm-granite-granite-4.0",
        "NousResearch-Hermes-3-Llama-3.1-8B-tool_use",
        "Mistral-Small-3.2-24B-Instruct-2506",
    ],
)
def test_models_that_do_not_think_have_no_format(stem: str) -> None:
    assert fmt_of(stem) is None


def test_the_vocabulary_alone_can_tell() -> None:
    """A model whose template says nothing of thinking (a generic ChatML one)
    but whose vocabulary has the markers as tokens: found by its vocabulary,
    not its name."""
    chatml = template("Qwen-Qwen2.5-7B-Instruct")
    think = detect(chatml.source, {"<think>", "</think>"}, chatml.variables)
    assert think is not None and think.family == "think"
    brackets = detect(chatml.source, {"[THINK]", "[/THINK]"}, chatml.variables)
    assert brackets is not None and brackets.family == "think-brackets"
    harmony = detect(chatml.source, {"<|channel|>", "<|message|>"}, chatml.variables)
    assert harmony is not None and harmony.family == "harmony"
    assert detect(chatml.source, {"<think>"}, chatml.variables) is None  # half a pair


def generation_tail(stem: str, **options: object) -> str:
    t = template(stem)
    user = ({"role": "user", "content": "Hi"},)
    bare = t.render(user, add_generation_prompt=False, options=options)
    full = t.render(user, add_generation_prompt=True, options=options)
    assert full.startswith(bare)
    return full[len(bare) :]


def test_prompts_that_open_the_thinking_are_recognised() -> None:
    """The R1 distills and QwQ open <think> in the generation prompt: the
    reply starts inside the thinking. Qwen3.5 with thinking off closes an
    empty block there; gpt-oss and Ministral leave it to the model."""
    r1 = fmt_of("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B")
    assert r1 is not None
    assert opens_thinking(
        r1, generation_tail("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", enable_thinking=True)
    )
    assert not opens_thinking(
        r1, generation_tail("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", enable_thinking=False)
    )
    qwen = fmt_of("Qwen3.5-4B")
    assert qwen is not None
    assert opens_thinking(qwen, generation_tail("Qwen3.5-4B", enable_thinking=True))
    assert not opens_thinking(qwen, generation_tail("Qwen3.5-4B", enable_thinking=False))
    harmony = fmt_of("openai-gpt-oss-120b")
    assert harmony is not None
    assert not opens_thinking(harmony, generation_tail("openai-gpt-oss-120b"))
    apriel = fmt_of("unsloth-Apriel-1.5")
    assert apriel is not None and opens_thinking(apriel, generation_tail("unsloth-Apriel-1.5"))


def test_the_settings_reach_the_template() -> None:
    qwen = fmt_of("Qwen3.5-4B")
    assert template_kwargs(qwen, "on", "medium") == {"enable_thinking": True}
    assert template_kwargs(qwen, "off", "high") == {"enable_thinking": False}
    assert template_kwargs(qwen, "auto", "low") == {}  # the template's own default
    granite = fmt_of("ibm-granite-granite-3.3-2B-Instruct")
    assert template_kwargs(granite, "on", "medium") == {"thinking": True}
    oss = fmt_of("openai-gpt-oss-120b")
    assert template_kwargs(oss, "off", "high") == {"reasoning_effort": "high"}
    # ... and change what is rendered.
    user = ({"role": "user", "content": "Hi"},)
    oss_t = template("openai-gpt-oss-120b")
    for level in ("low", "high"):
        assert f"Reasoning: {level}" in oss_t.render(user, options={"reasoning_effort": level})
    smol = template("HuggingFaceTB-SmolLM3-3B")
    assert "/no_think" in smol.render(user, options={"enable_thinking": False})
    assert "/no_think" not in smol.render(user, options={"enable_thinking": True})
    granite_t = template("ibm-granite-granite-3.3-2B-Instruct")
    assert "<think>" in granite_t.render(user, options={"thinking": True})
    assert "<think>" not in granite_t.render(user, options={"thinking": False})


# -- the split ------------------------------------------------------------------------

THINK = ReasoningFormat("think", "<think>", "</think>", budget_close="\n</think>\n\n")
CASES: list[tuple[ReasoningFormat, str, bool, tuple[str, str]]] = [
    (THINK, "<think>\nLet me see.\n</think>\n\nIt is 4.", False, ("Let me see.", "It is 4.")),
    (THINK, "Let me see.\n</think>\n\nIt is 4.", True, ("Let me see.", "It is 4.")),
    (THINK, "No thinking at all.", False, ("", "No thinking at all.")),
    (THINK, "  indented answer\n", False, ("", "  indented answer\n")),
    (THINK, "</think>A stray close.", False, ("", "A stray close.")),
    (THINK, "<think>a</think>b<think>c</think>d", False, ("a\n\nc", "b\n\nd")),
    (THINK, "<think>cut off while thinking", False, ("cut off while thinking", "")),
    (THINK, "<think>\n\n</think>\n\nHello", False, ("", "Hello")),
    (THINK, "still <thin", True, ("still <thin", "")),  # a marker's start, at the end
    (THINK, "a < b and c <think", False, ("", "a < b and c <think")),
    (
        ReasoningFormat("think-brackets", "[THINK]", "[/THINK]"),
        "[THINK]Plan: add.[/THINK]The sum is 5.",
        False,
        ("Plan: add.", "The sum is 5."),
    ),
    (
        detect("<|channel|>", set()),  # type: ignore[arg-type]
        "<|channel|>analysis<|message|>User wants 2+2.<|end|><|start|>assistant"
        "<|channel|>final<|message|>4",
        False,
        ("User wants 2+2.", "4"),
    ),
    (
        detect("<|channel> <channel|>", set()),  # type: ignore[arg-type]
        "<|channel>thought\nThinking here.<channel|>Answer.",
        False,
        ("Thinking here.", "Answer."),
    ),
    (
        detect("[BEGIN FINAL RESPONSE]", set()),  # type: ignore[arg-type]
        "Here are my reasoning steps: ...\n[BEGIN FINAL RESPONSE]\nDone.[END FINAL RESPONSE]",
        True,
        ("Here are my reasoning steps: ...", "Done."),
    ),
    (
        detect("<think> <response>", set()),  # type: ignore[arg-type]
        "<think>Hmm.</think><response>Yes.</response>",
        False,
        ("Hmm.", "Yes."),
    ),
]


@pytest.mark.parametrize(("fmt", "text", "inside", "expected"), CASES)
def test_the_split_is_the_same_at_every_cut(
    fmt: ReasoningFormat, text: str, inside: bool, expected: tuple[str, str]
) -> None:
    assert split(fmt, text, inside=inside) == expected
    for cut in range(len(text) + 1):  # two pieces, cut anywhere
        s = Splitter(fmt, inside=inside)
        parts = s.feed(text[:cut]) + s.feed(text[cut:]) + s.flush()
        got = (
            "".join(p.text for p in parts if p.reasoning),
            "".join(p.text for p in parts if not p.reasoning),
        )
        assert got == expected, cut
    s = Splitter(fmt, inside=inside)  # a character at a time
    parts = [p for ch in text for p in s.feed(ch)] + s.flush()
    assert "".join(p.text for p in parts if p.reasoning) == expected[0]


def test_history_goes_in_the_field_the_template_reads() -> None:
    """Earlier thinking reaches a template as its own field: rendered exactly
    as the template renders that field, never inside the visible content."""
    qwen = template("Qwen3.5-4B")
    assert qwen.reasoning_fields == ("reasoning_content",)
    ours = qwen.render(
        (
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4", "reasoning": "Add them."},
        ),
        add_generation_prompt=False,
    )
    theirs = qwen._template.render(
        messages=[
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4", "reasoning_content": "Add them."},
        ],
        bos_token="<s>",
        eos_token="",
        add_generation_prompt=False,
    )
    assert ours == theirs and "<think>\nAdd them.\n</think>\n\n4" in ours
    oss = template("openai-gpt-oss-120b")
    assert "thinking" in oss.reasoning_fields
    r1 = template("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B")
    assert r1.reasoning_fields == ()  # it drops old thinking: not passed at all
    shown = r1.render(
        (
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4", "reasoning": "Add them."},
            {"role": "user", "content": "And 3+3?"},
        )
    )
    assert "Add them." not in shown and "4" in shown


def test_a_stream_cut_at_any_byte_splits_the_same() -> None:
    """Tokens end mid-character (byte-fallback pieces of an emoji): bytes go
    through the UTF-8 assembler, then the split; any cut gives the same."""
    from localchat.core.engine.streaming import Utf8Assembler

    text = "<think>\nGröße: 🎉 → ok?\n</think>\n\nJa — 🎉 größer."
    data = text.encode()
    expected = ("Größe: 🎉 → ok?", "Ja — 🎉 größer.")
    for cut in range(len(data) + 1):
        utf8, s = Utf8Assembler(), Splitter(THINK)
        parts = s.feed(utf8.feed(data[:cut])) + s.feed(utf8.feed(data[cut:]))
        parts += s.feed(utf8.flush()) + s.flush()
        got = (
            "".join(p.text for p in parts if p.reasoning),
            "".join(p.text for p in parts if not p.reasoning),
        )
        assert got == expected, cut
