"""Structured output (issue 23): JSON schemas and ``json_object`` as GBNF
grammars (``json_grammar.py``), enforced by llama.cpp's grammar sampler in the
worker. Random-weight models at temperature 1 write whatever the grammar lets
them: every reply that ends by itself must parse, validate, and hold no raw
control characters in its strings."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from localchat.core.engine.client import Engine
from localchat.core.engine.json_grammar import JSON_OBJECT_GRAMMAR, schema_grammar
from localchat.core.engine.protocol import Message
from localchat.core.errors import EngineError, SettingError
from localchat.core.params import GenerationSettings
from localchat.testing.tiny_models import fixture_template, write_llama_gguf

HI: list[Message] = [{"role": "user", "content": "Describe it in JSON."}]
SEEDS = range(4)

NESTED: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer"},
        "nick": {"type": "string", "maxLength": 6},
        "address": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "minLength": 1, "maxLength": 10},
                "geo": {
                    "type": "object",
                    "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
                    "required": ["lat", "lon"],
                    "additionalProperties": False,
                },
                "note": {"type": ["string", "null"], "maxLength": 8},
            },
            "required": ["city", "geo"],
            "additionalProperties": False,
        },
    },
    "required": ["name", "age", "address"],
    "additionalProperties": False,
}

ENUMS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "status": {"enum": ["active", "inactive", 'say "hi"\n']},
        "level": {"enum": [1, 2.5, None, True]},
        "color": {"$ref": "#/$defs/color"},
        "unit": {"const": "°C"},
        "kind": {"oneOf": [{"$ref": "#/$defs/color"}, {"type": "integer"}]},
        "ok": {"type": "boolean"},
    },
    "required": ["status", "level", "color", "unit", "kind", "ok"],
    "$defs": {"color": {"type": "string", "enum": ["red", "green", "blue"]}},
}

ARRAYS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "items": {
            "type": "array",
            "minItems": 1,
            "maxItems": 4,
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "done": {"type": "boolean"},
                    "tags": {
                        "type": "array",
                        "items": {"type": "string", "maxLength": 5},
                        "maxItems": 3,
                    },
                },
                "required": ["id", "done"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["items"],
    "additionalProperties": False,
}

SCHEMAS = {"nested": NESTED, "enums": ENUMS, "arrays": ARRAYS}

JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


def hot(seed: int, max_tokens: int = 4000) -> GenerationSettings:
    """Temperature 1 with no cut-off: the model may pick any token the grammar allows."""
    return GenerationSettings(
        temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=seed, max_tokens=max_tokens
    )


def raw_controls(text: str) -> list[str]:
    """Raw control characters inside the JSON strings of ``text``."""
    return [c for s in JSON_STRING.findall(text) for c in s if ord(c) < 0x20 or c == "\x7f"]


def finished(engine: Engine, grammar: str, seed: int, **kw: Any) -> str:
    stream = engine.chat(HI, hot(seed, **kw), grammar=grammar)
    text = stream.text()
    assert stream.result is not None
    assert stream.result.finish_reason == "stop", (stream.result.finish_reason, text[-200:])
    return text


@pytest.fixture(scope="module")
def ascii_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Byte vocabulary, printable ASCII only. A byte-level vocabulary can spell
    a non-ASCII character in an overlong UTF-8 form, which llama.cpp's grammar
    reads as that character and Python as several U+FFFD, overrunning a
    ``maxLength``; with ASCII only, lengths are exact."""
    return write_llama_gguf(tmp_path_factory.mktemp("ascii") / "ascii.gguf", ascii_only=True)


@pytest.mark.parametrize("name", SCHEMAS)
def test_replies_follow_the_schema(engine: Engine, ascii_model: Path, name: str) -> None:
    schema = SCHEMAS[name]
    grammar = schema_grammar(schema)
    engine.load(ascii_model)
    for seed in SEEDS:
        text = finished(engine, grammar, seed)
        value = json.loads(text)
        jsonschema.validate(value, schema)
        assert not raw_controls(text)


def test_replies_follow_the_schema_with_a_real_tokenizer(
    engine: Engine, llama3_model: Path
) -> None:
    """Llama 3's vocabulary: tokens of many characters, some spanning what
    the grammar must keep apart (``",`` and the like)."""
    engine.load(llama3_model)
    for schema in (ENUMS, ARRAYS):
        grammar = schema_grammar(schema)
        for seed in SEEDS[:2]:  # each token checks 128k candidates against the grammar
            text = finished(engine, grammar, seed)
            jsonschema.validate(json.loads(text), schema)
            assert not raw_controls(text)


def test_strings_never_hold_raw_control_characters(engine: Engine, tiny_model: Path) -> None:
    """The byte vocabulary's random model writes bytes like \\x07 and \\x1b
    freely: left to itself its reply has them, under the grammar its strings
    never do (llama-cpp-python's own converter lets them in)."""
    engine.load(tiny_model)
    free = "".join(engine.chat(HI, hot(seed, max_tokens=300)).text() for seed in SEEDS)
    assert re.search(r"[\x00-\x08\x0b-\x1f]", free), "the model no longer writes control bytes"

    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "string"},
            "b": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["a", "b"],
    }
    grammar = schema_grammar(schema)
    strings = 0
    for seed in SEEDS:
        text = finished(engine, grammar, seed)
        assert not raw_controls(text), repr(text)
        jsonschema.validate(json.loads(text), schema)  # json.loads is strict: it would refuse them
        strings += sum(len(s) for s in JSON_STRING.findall(text))
    assert strings > 200  # the strings were long enough to tempt the model


def test_json_object_gives_an_object(engine: Engine, tiny_model: Path) -> None:
    engine.load(tiny_model)
    for seed in SEEDS:
        text = finished(engine, JSON_OBJECT_GRAMMAR, seed)
        assert isinstance(json.loads(text), dict)
        assert not raw_controls(text)


def test_a_reasoning_model_thinks_freely_then_answers_in_json(
    engine: Engine, tmp_path: Path
) -> None:
    """The R1 distill's prompt opens <think>: the thinking is free text, the
    grammar holds from its end (here the budget's)."""
    model = write_llama_gguf(
        tmp_path / "r1.gguf",
        chat_template=fixture_template("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B"),
        ascii_only=True,
    )
    engine.load(model)
    s = GenerationSettings(
        temperature=1.0, seed=3, max_tokens=400, thinking="on", thinking_budget=10
    )
    stream = engine.chat(HI, s, grammar=schema_grammar(ENUMS))
    text = stream.text()
    assert stream.result is not None and stream.result.finish_reason == "stop"
    assert stream.result.reasoning and not stream.result.reasoning.lstrip().startswith("{")
    jsonschema.validate(json.loads(text), ENUMS)


def test_a_bad_grammar_is_a_one_line_error(engine: Engine, tiny_model: Path) -> None:
    engine.load(tiny_model)
    for grammar, says in (
        ('root ::= "a" undefined-rule', "Undefined rule identifier 'undefined-rule'"),
        ('answer ::= "a"', "root"),
        ('root ::= root "a"', "left recursion"),
        ("   ", "empty"),
    ):
        with pytest.raises(EngineError) as err:
            engine.chat(HI, hot(0), grammar=grammar).text()
        assert says in str(err.value) and "\n" not in str(err.value)
    # The worker is fine: the next reply, with or without a grammar, comes.
    assert engine.chat(HI, hot(0, max_tokens=5)).text()
    assert json.loads(finished(engine, JSON_OBJECT_GRAMMAR, 0)) is not None


def test_a_given_start_and_a_grammar_do_not_mix(engine: Engine, tiny_model: Path) -> None:
    engine.load(tiny_model)
    with pytest.raises(EngineError, match="grammar"):
        engine.chat(HI, hot(0), prefix=[65], grammar=JSON_OBJECT_GRAMMAR).text()


@pytest.mark.parametrize(
    "schema, named",
    [
        ({"type": "string", "pattern": "^a+$"}, "'pattern' at #"),
        (
            {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}},
            "'minimum' at #/properties/n",
        ),
        ({"type": "array", "uniqueItems": True}, "'uniqueItems'"),
        ({"allOf": [{"type": "string"}, {"maxLength": 3}]}, "'allOf'"),
        ({"$ref": "https://example.com/s.json"}, "not local"),
        ({"$ref": "#/$defs/missing"}, "names nothing"),
        ({"type": "object", "properties": {}, "required": ["x"]}, "'x'"),
        ({"type": "decimal"}, "unknown type 'decimal'"),
        ({"not": {"type": "null"}}, "'not'"),
    ],
)
def test_what_a_grammar_cannot_enforce_is_refused(schema: dict[str, Any], named: str) -> None:
    with pytest.raises(SettingError) as err:
        schema_grammar(schema)
    assert named in str(err.value) and "\n" not in str(err.value)


def test_grammars_for_schemas_read_as_expected() -> None:
    """Small things the generation tests may not hit."""
    # Recursive refs: a rule that names itself.
    tree = {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
            }
        },
        "$ref": "#/$defs/node",
    }
    assert "ref--defs-node" in schema_grammar(tree)
    # An enum's strings are spelled exactly, escapes and all.
    assert r'"\"say \\\"hi\\\"\\n\""' in schema_grammar(ENUMS)
    # Annotations and uniqueItems false are no constraints.
    schema_grammar({"type": "array", "uniqueItems": False, "description": "x", "title": "t"})
    # Strings keep raw control characters out (llama-cpp-python's rule lets them in).
    assert r"\x20" in JSON_OBJECT_GRAMMAR and '[^"\\\\]' not in JSON_OBJECT_GRAMMAR
