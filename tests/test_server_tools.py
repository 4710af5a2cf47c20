"""Tool calling through ``localchat serve`` with the real OpenAI client:
tiny random-weight models with the real chat templates of each family. A
random model calls a tool only when made to (``tool_choice`` required or
named, enforced by a grammar): those calls must be well-formed and valid."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import ollama
import openai
import pytest

from localchat.testing.tiny_models import fixture_template, write_llama_gguf
from tests.server_helpers import Server, install

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 12},
        "units": {"type": "string", "enum": ["C", "F"]},
        "days": {"type": "integer"},
        "hourly": {"type": "boolean"},
    },
    "required": ["city", "units"],
}
ADD = {
    "type": "object",
    "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
    "required": ["a", "b"],
}
TOOLS = [
    {
        "type": "function",
        "function": {"name": "get_weather", "description": "Weather", "parameters": WEATHER},
    },
    {"type": "function", "function": {"name": "add", "description": "a + b", "parameters": ADD}},
]
SCHEMAS = {"get_weather": WEATHER, "add": ADD}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
CALLED = {"city": "Paris", "units": "C"}
CALL_TEXT = (
    '<tool_call>\n{"name": "get_weather", "arguments": ' + json.dumps(CALLED) + "}\n</tool_call>"
)


def calls_by_itself(name: str, array: Any) -> Any:
    """A model that writes its last token whatever it reads: one dimension
    of every embedding dominates the normed hidden state, and only that
    token's output row reads it."""
    if name == "token_embd.weight":
        array[:, 0] = 30.0
    if name == "output.weight":
        array[-1, 0] = 200.0
    return array


FAMILIES: dict[str, dict[str, Any]] = {
    "hermes": {"chat_template": fixture_template("Qwen-Qwen2.5-7B-Instruct"), "ascii_only": True},
    "qwen-xml": {
        "chat_template": fixture_template("Qwen3.5-4B"),
        "ascii_only": True,
        "added_tokens": [("<tool_call>", 4), ("</tool_call>", 4)],
    },
    "llama3": {
        "vocab": "llama-bpe",
        "chat_template": fixture_template("meta-llama-Llama-3.1-8B-Instruct"),
    },
    # The markers as control tokens, as in Mistral's vocabularies: their
    # text must still reach the parser.
    "mistral": {
        "vocab": "llama-spm",
        "chat_template": fixture_template("mistralai-Mistral-Nemo-Instruct-2407"),
        "added_tokens": [("[TOOL_CALLS]", 3)],
    },
    "mistral-args": {
        "vocab": "llama-spm",
        "chat_template": fixture_template("Mistral-Small-3.2-24B-Instruct-2506"),
        "added_tokens": [("[TOOL_CALLS]", 3), ("[ARGS]", 3), ("[CALL_ID]", 3)],
    },
    "gemma4": {
        "chat_template": fixture_template("google-gemma-4-31B-it"),
        "ascii_only": True,
        "added_tokens": [("<|tool_call>", 3), ("<tool_call|>", 3), ('<|"|>', 3)],
    },
    "generic": {"chat_template": fixture_template("google-gemma-2-2b-it"), "ascii_only": True},
}
CALLER = {
    "chat_template": fixture_template("Qwen-Qwen2.5-7B-Instruct"),
    "added_tokens": [(CALL_TEXT, 4)],
    "tensor_hook": calls_by_itself,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("tools-home")
    made = tmp_path_factory.mktemp("tool-models")
    for name, options in {**FAMILIES, "caller": CALLER}.items():
        install(home, write_llama_gguf(made / f"{name}.gguf", **options), f"{name}.gguf")
    s = Server(home).wait()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def ask(client: openai.OpenAI, model: str, **kw: Any) -> Any:
    args: dict[str, Any] = {
        "model": model,
        "messages": ASK,
        "tools": TOOLS,
        "max_tokens": 300,
        "temperature": 1.0,
        "top_p": 1.0,
        "seed": 3,
        "extra_body": {"thinking": "off", "top_k": 0, "min_p": 0.0},
    }
    return client.chat.completions.create(**{**args, **kw})


def assert_valid(name: str, arguments: str) -> None:
    jsonschema.validate(json.loads(arguments), SCHEMAS[name])


def reassembled(chunks: list[Any]) -> tuple[list[dict[str, str]], str | None, str]:
    """The calls a stream's deltas spell (by index), its finish reason and text."""
    calls: dict[int, dict[str, str]] = {}
    finish, text = None, ""
    for chunk in chunks:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        text += choice.delta.content or ""
        for delta in choice.delta.tool_calls or ():
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            if delta.id:
                assert not call["id"], "an id comes once, first"
                call["id"] = delta.id
            if delta.function and delta.function.name:
                call["name"] += delta.function.name
            if delta.function and delta.function.arguments:
                assert call["name"], "the name comes before the arguments"
                call["arguments"] += delta.function.arguments
        finish = choice.finish_reason or finish
    return [calls[i] for i in sorted(calls)], finish, text


@pytest.mark.parametrize("family", FAMILIES)
def test_a_named_call_is_well_formed_and_valid_in_every_family(
    client: openai.OpenAI, family: str
) -> None:
    named = {"type": "function", "function": {"name": "get_weather"}}
    reply = ask(client, family, tool_choice=named)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather"
    assert call.id and call.id.isalnum()
    assert_valid("get_weather", call.function.arguments)
    # Streamed, with the same seed: the same call, in deltas.
    calls, finish, text = reassembled(list(ask(client, family, tool_choice=named, stream=True)))
    assert finish == "tool_calls" and text == ""
    assert [(c["name"], json.loads(c["arguments"])) for c in calls] == [
        ("get_weather", json.loads(call.function.arguments))
    ]


def test_required_makes_one_or_more_calls_of_the_tools(client: openai.OpenAI) -> None:
    for seed in (1, 2, 3):
        reply = ask(client, "hermes", tool_choice="required", seed=seed)
        calls = reply.choices[0].message.tool_calls
        assert calls and reply.choices[0].finish_reason == "tool_calls"
        for call in calls:
            assert_valid(call.function.name, call.function.arguments)
        assert len({c.id for c in calls}) == len(calls)
    several = [
        len(ask(client, "hermes", tool_choice="required", seed=seed).choices[0].message.tool_calls)
        for seed in range(4, 12)
    ]
    assert max(several) > 1  # a random model, free to, makes several calls at times
    for seed in range(4, 12):
        one = ask(client, "hermes", tool_choice="required", seed=seed, parallel_tool_calls=False)
        assert len(one.choices[0].message.tool_calls) == 1


@pytest.mark.parametrize("family", FAMILIES)
def test_a_tool_result_goes_back_to_the_model(client: openai.OpenAI, family: str) -> None:
    """The client's call (content null, its own long id) and the tool's
    result render through the template: the result's words are in the
    prompt (it grows by them), for Mistral's 9-character ids too."""

    def prompt_tokens(result: str) -> int:
        messages = [
            *ASK,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_Hx7Ck2bm3Qq0TzMfRr8sJd",
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "arguments": '{"city": "Paris", "units": "C"}',
                        },
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_Hx7Ck2bm3Qq0TzMfRr8sJd", "content": result},
        ]
        reply = ask(client, family, messages=messages, max_tokens=2)
        return int(reply.usage.prompt_tokens)

    assert prompt_tokens("eighteen degrees, a light wind from the west") > prompt_tokens("")


def test_auto_lets_the_model_answer_with_the_tools_in_its_prompt(client: openai.OpenAI) -> None:
    with_tools = ask(client, "hermes", max_tokens=4)
    without = ask(client, "hermes", max_tokens=4, tools=openai.NOT_GIVEN)
    none = ask(client, "hermes", max_tokens=4, tool_choice="none")
    assert with_tools.usage.prompt_tokens > without.usage.prompt_tokens
    assert none.usage.prompt_tokens == without.usage.prompt_tokens  # "none": not offered
    assert with_tools.choices[0].finish_reason in ("length", "stop", "tool_calls")


@pytest.mark.parametrize(
    ("changes", "param", "words"),
    [
        (
            {"tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice",
            "nope",
        ),
        ({"tool_choice": "required", "tools": openai.NOT_GIVEN}, "tool_choice", "needs tools"),
        (
            {"tools": [{"type": "function", "function": {"name": "bad name!"}}]},
            "tools[0].function.name",
            "letters",
        ),
        (
            {"tool_choice": "required", "response_format": {"type": "json_object"}},
            "tool_choice",
            "response_format",
        ),
        (
            {
                "tool_choice": "required",
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "f",
                            "parameters": {
                                "type": "object",
                                "properties": {"x": {"type": "string", "pattern": "^a"}},
                            },
                        },
                    }
                ],
            },
            "tools",
            "pattern",
        ),
    ],
)
def test_bad_tool_requests_are_400s_naming_the_field(
    client: openai.OpenAI, changes: dict[str, Any], param: str, words: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, "hermes", **changes)
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == param
    assert words in error["message"] and "\n" not in error["message"]


def test_a_call_the_model_chooses_to_make_is_read_back(client: openai.OpenAI) -> None:
    """``tool_choice`` auto: no grammar; the "caller" model writes a call by
    itself (one token spelling it), which comes back as a call, whole and
    streamed, not as text."""
    reply = ask(client, "caller", max_tokens=1)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", CALLED)
    calls, finish, text = reassembled(list(ask(client, "caller", max_tokens=1, stream=True)))
    assert finish == "tool_calls" and text == ""
    assert [(c["name"], json.loads(c["arguments"])) for c in calls] == [("get_weather", CALLED)]
    # Without tools offered, the same text is the answer.
    plain = ask(client, "caller", max_tokens=1, tools=openai.NOT_GIVEN).choices[0]
    assert plain.message.content == CALL_TEXT and not plain.message.tool_calls


def test_ollama_clients_get_calls_and_send_results(server: Server) -> None:
    """Ollama's /api/chat with tools: the call comes as ``message.tool_calls``
    with its arguments as an object, whole or streamed; a conversation with
    the call and the tool's result goes back in Ollama's shapes."""
    client = ollama.Client(host=server.url)
    options = {"num_predict": 1}
    reply = client.chat(model="caller", messages=ASK, tools=TOOLS, options=options)
    (call,) = reply.message.tool_calls or []
    assert (call.function.name, dict(call.function.arguments)) == ("get_weather", CALLED)
    assert not reply.message.content
    parts = list(
        client.chat(model="caller", messages=ASK, tools=TOOLS, options=options, stream=True)
    )
    streamed = [c for p in parts for c in (p.message.tool_calls or [])]
    assert [(c.function.name, dict(c.function.arguments)) for c in streamed] == [
        ("get_weather", CALLED)
    ]
    assert "".join(p.message.content or "" for p in parts) == ""
    messages: list[Any] = [
        *ASK,
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": "eighteen degrees, light wind", "tool_name": "get_weather"},
    ]
    answered = client.chat(model="hermes", messages=messages, tools=TOOLS, options=options)
    asked = client.chat(model="hermes", messages=ASK, tools=TOOLS, options=options)
    assert answered.prompt_eval_count and asked.prompt_eval_count
    assert answered.prompt_eval_count > asked.prompt_eval_count + 10  # the call and its result
    assert "tools" in (client.show("hermes").capabilities or [])
