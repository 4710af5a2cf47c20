"""Tool calls written as each family's chat template writes them are read
back, whole or streamed a character at a time; text that only looks like a
call stays text; templates without tools get ours."""

from __future__ import annotations

import json
from typing import Any

import pytest

from localchat.core.engine.template import ChatTemplate
from localchat.core.engine.tools.calls import ToolCall, short_id, template_messages
from localchat.core.engine.tools.formats import FORMATS, detect, parse
from localchat.core.engine.tools.stream import ToolStream
from localchat.testing.tiny_models import fixtures_dir

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "days": {"type": "integer"},
                    "units": {"type": "string", "enum": ["C", "F"]},
                    "detail": {"type": "object"},
                },
                "required": ["city"],
            },
        },
    }
]
ARGS = {
    "city": "Paris, France",
    "days": 2,
    "units": "C",
    "detail": {"wind": True, "hours": [6, 12]},
}
CALL = {
    "id": "call_0x1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": json.dumps(ARGS)},
}
ASKED: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]

FAMILIES = {
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use": "hermes",
    "Qwen-Qwen2.5-7B-Instruct": "hermes",
    "Qwen-QwQ-32B": "hermes",
    "ibm-granite-granite-4.0": "hermes",
    "Qwen3.5-4B": "qwen-xml",
    "meta-llama-Llama-3.1-8B-Instruct": "llama3",
    "mistralai-Mistral-Nemo-Instruct-2407": "mistral",
    "Mistral-Small-3.2-24B-Instruct-2506": "mistral-args",
    "google-gemma-4-31B-it": "gemma4",
    "google-gemma-2-2b-it": "generic",
    "microsoft-Phi-3.5-mini-instruct": "generic",
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B": "generic",
}


def template(stem: str) -> ChatTemplate:
    source = (fixtures_dir() / "templates" / f"{stem}.jinja").read_text()
    return ChatTemplate(source, bos_token="<s>", eos_token="</s>")


def written_call(t: ChatTemplate) -> str:
    """What the template writes for an assistant turn that makes CALL: the
    text after the prompt's generation header, else from the call's marker."""
    asked = t.render(ASKED, tools=TOOLS)
    said = t.render(
        [*ASKED, {"role": "assistant", "content": None, "tool_calls": [CALL]}],  # type: ignore[typeddict-item]
        tools=TOOLS,
        add_generation_prompt=False,
    )
    if said.startswith(asked):
        return said[len(asked) :]
    opening = t.tool_format.opening[0]
    return said[said.rindex(opening) :]


def streamed(fmt_name: str, text: str) -> tuple[str, list[ToolCall]]:
    stream = ToolStream(FORMATS[fmt_name], TOOLS)
    events = [e for ch in text for e in stream.feed(ch)] + stream.finish()
    return "".join(e for e in events if isinstance(e, str)), stream.calls


@pytest.mark.parametrize("stem", FAMILIES)
def test_each_family_reads_back_the_call_its_template_writes(stem: str) -> None:
    t = template(stem)
    assert t.tool_format.name == FAMILIES[stem]
    text = written_call(t)
    for content, calls in (parse(t.tool_format, text, TOOLS), streamed(t.tool_format.name, text)):
        assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", ARGS)]
        assert "get_weather" not in content  # the call is not left in the text
        assert all(c.id.isalnum() and len(c.id) == 9 for c in calls)


@pytest.mark.parametrize("stem", FAMILIES)
def test_a_tool_result_reaches_the_prompt(stem: str) -> None:
    """The call (content null, as clients send it) and its result render
    through the real template, with the client's own id (Mistral's want
    9 characters: a long id is shortened the same way in both places)."""
    t = template(stem)
    history = [
        *ASKED,
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_0x1", "content": "18 degrees and sunny"},
    ]
    prompt = t.render(history, tools=TOOLS)
    assert "18 degrees and sunny" in prompt
    assert "Paris, France" in prompt
    assert "get_weather" in prompt
    if "mistral" in t.tool_format.name:
        assert prompt.count(short_id("call_0x1")) == 2


def test_the_reply_before_a_call_is_content_and_the_rest_is_calls() -> None:
    text = (
        "Let me look.\n<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>\n'
    )
    for content, calls in (parse(FORMATS["hermes"], text, TOOLS), streamed("hermes", text)):
        assert content.strip() == "Let me look."
        assert [json.loads(c.arguments)["city"] for c in calls] == ["Rome", "Oslo"]


@pytest.mark.parametrize(
    ("fmt", "text"),
    [
        ("hermes", "I like the <tool_call> tag and </tool_call> too"),
        ("hermes", "ends with a marker's start <tool_c"),
        ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Ro'),  # cut off
        ("llama3", 'Here is JSON: {"name": "x", "parameters": {}}'),  # not the whole reply
        ("llama3", '{"answer": 42}'),  # JSON, but not a call
        ("mistral", "[TOOL_CALLS] nothing after it"),
        ("gemma4", "<|tool_call>call:get_weather{city:<|tool_call|>"),
        ("qwen-xml", "<tool_call>\n<function=get_weather>\n<parameter=city>\nRo"),
    ],
)
def test_text_that_only_looks_like_a_call_stays_text(fmt: str, text: str) -> None:
    for content, calls in (parse(FORMATS[fmt], text, TOOLS), streamed(fmt, text)):
        assert calls == []
        assert content == text


def test_text_streams_at_once_and_only_a_possible_marker_is_held() -> None:
    stream = ToolStream(FORMATS["hermes"], TOOLS)
    assert stream.feed("It is <") == ["It is "]
    assert stream.feed("b>") == ["<b>"]
    assert stream.feed("<tool_call>\n{") == []
    done = stream.feed('"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>')
    assert [c.name for c in done if isinstance(c, ToolCall)] == ["get_weather"]


def test_qwen_xml_values_follow_the_parameters_types() -> None:
    text = (
        "<tool_call>\n<function=get_weather>\n<parameter=city>\n2024\n</parameter>\n"
        "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>"
    )
    _, calls = parse(FORMATS["qwen-xml"], text, TOOLS)
    assert json.loads(calls[0].arguments) == {"city": "2024", "days": 3}


def test_the_format_is_told_from_the_template() -> None:
    assert detect("{{ messages }}", reads_tools=False).name == "generic"
    assert detect("{% if tools %}{{ tools }}{% endif %}", reads_tools=True).name == "generic"


def test_messages_for_templates_take_objects_and_names() -> None:
    messages = template_messages(
        [
            {"role": "assistant", "content": "", "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "call_0x1", "content": "ok"},
            {"role": "assistant", "content": "done", "tool_calls": []},
        ],
        short_ids=True,
    )
    assert messages[0]["tool_calls"][0]["function"]["arguments"] == ARGS
    assert messages[0]["tool_calls"][0]["id"] == messages[1]["tool_call_id"] == short_id("call_0x1")
    assert messages[1]["name"] == "get_weather"
    assert "tool_calls" not in messages[2]  # Llama 3.1's template tests for the key
