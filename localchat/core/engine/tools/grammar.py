"""The grammar of a required call (OpenAI's ``tool_choice`` ``required``,
or a named function) in the model's own format: the call is then always
well-formed, and its arguments valid under the function's parameters
schema (``json_grammar.py``'s rules; Gemma 4's own syntax is kept
well-formed, its values free)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from localchat.core.engine.json_grammar import PRIMITIVES, literal, schema_rules
from localchat.core.engine.tools.calls import parameters
from localchat.core.engine.tools.formats import ToolFormat

MORE_CALLS = 4
"""How many calls after the first a ``required`` choice allows."""


def call_grammar(
    fmt: ToolFormat,
    tools: Sequence[Mapping[str, Any]],
    name: str | None = None,
    *,
    several: bool = True,
) -> str:
    """GBNF for one call of ``name`` (None: one or more calls of any of
    ``tools``, or one only unless ``several``) as ``fmt`` writes it. A
    schema the grammar cannot enforce is a one-line
    :class:`~localchat.core.errors.SettingError` naming the tool."""
    several = several and name is None
    chosen = [(i, t) for i, t in enumerate(tools) if name is None or t["function"]["name"] == name]
    schemas = [(parameters(t), f"tools[{i}].function.parameters") for i, t in chosen]
    if fmt.name == "qwen-xml":
        rules, names = _qwen_rules(schemas)
    elif fmt.name == "gemma4":
        rules, names = _gemma_rules(schemas)
    else:
        names, rules = schema_rules(schemas)
    calls = []
    for (_i, tool), args in zip(chosen, names, strict=True):
        calls.append(_call(fmt.name, str(tool["function"]["name"]), args))
    one = "call"
    lines = [f"call ::= {' | '.join(calls)}"]
    if fmt.name == "mistral":
        body = '"[TOOL_CALLS][" call ' + (
            f'( "," " "? call ){{0,{MORE_CALLS}}} ' if several else ""
        )
        lines.append(f'root ::= {body}"]"')
    elif several and fmt.name != "llama3":
        lines.append(f'root ::= {one} ( "\\n" {one} ){{0,{MORE_CALLS}}}')
    else:
        lines.append(f"root ::= {one}")
    return "\n".join(lines) + "\n" + rules


def _call(fmt: str, name: str, args: str) -> str:
    quoted = literal(name)  # "\"name\"" as a GBNF literal
    if fmt == "llama3":
        return f'"{{\\"name\\": " {quoted} ", \\"parameters\\": " {args} "}}"'
    if fmt == "mistral":
        return f'"{{\\"name\\": " {quoted} ", \\"arguments\\": " {args} "}}"'
    if fmt == "mistral-args":
        return f'"[TOOL_CALLS]" {literal_text(name)} "[ARGS]" {args}'
    if fmt == "qwen-xml":
        return (
            f'"<tool_call>\\n<function=" {literal_text(name)} ">\\n" {args} '
            '"</function>\\n</tool_call>"'
        )
    if fmt == "gemma4":
        return f'"<|tool_call>call:" {literal_text(name)} {args} "<tool_call|>"'
    # hermes, generic
    return (
        f'"<tool_call>\\n{{\\"name\\": " {quoted} ", \\"arguments\\": " {args} "}}\\n</tool_call>"'
    )


def literal_text(text: str) -> str:
    """``text`` itself as a GBNF literal (not as a JSON string)."""
    return json.dumps(text, ensure_ascii=False)


def _qwen_rules(schemas: list[tuple[dict[str, Any], str]]) -> tuple[str, list[str]]:
    """Qwen's XML parameters: ``<parameter=key>\nvalue\n</parameter>\n``
    for each property, a string's value as raw text, any other as JSON."""
    return _keyed_rules(
        schemas,
        "qwen",
        pair=lambda key, value: (
            f'"<parameter=" {literal_text(key)} ">\\n" {value} "\\n</parameter>\\n"'
        ),
        sep="",
        quote="",
        wrap=("", ""),
    )


def _gemma_rules(schemas: list[tuple[dict[str, Any], str]]) -> tuple[str, list[str]]:
    """Gemma 4's arguments: ``{key:value,...}``, strings between ``<|"|>``,
    numbers and booleans as JSON, lists and objects in its own syntax."""
    return _keyed_rules(
        schemas,
        "gemma",
        pair=lambda key, value: f'{literal_text(key)} ":" {value}',
        sep='","',
        quote=GEMMA_QUOTE,
        wrap=('"{"', '"}"'),
    )


GEMMA_QUOTE = '<|"|>'
GEMMA_VALUES = (
    'g-string ::= "<|\\"|>" [^<]* "<|\\"|>"\n'
    'g-value ::= g-string | number | "true" | "false" | "null" | g-object | g-list\n'
    'g-list ::= "[" ( g-value ( "," g-value )* )? "]"\n'
    'g-object ::= "{" ( g-key ":" g-value ( "," g-key ":" g-value )* )? "}"\n'
    "g-key ::= [a-zA-Z_] [a-zA-Z0-9_]*\n"
    + "".join(
        f"{rule} ::= {PRIMITIVES[rule]}\n" for rule in ("number", "integral-part", "decimal-part")
    )
)
"""Gemma 4's values of any shape (its lists and objects are not JSON)."""


def _keyed_rules(
    schemas: list[tuple[dict[str, Any], str]],
    tag: str,
    *,
    pair: Any,
    sep: str,
    quote: str,
    wrap: tuple[str, str],
) -> tuple[str, list[str]]:
    """Arguments written key by key (not as a JSON object): each property of
    the schema in its order, the required ones always, a string (or a
    string enum) as text between ``quote``, a number, boolean or null as
    JSON under its schema, anything else free (``GEMMA_VALUES``; Qwen
    writes those as JSON, also free)."""
    texts: list[str] = []
    names: list[str] = []
    values: list[tuple[Any, str]] = []
    plans: list[list[tuple[str, bool, str | int]]] = []
    q = literal_text(quote) if quote else ""
    for schema, where in schemas:
        props = schema.get("properties") or {}
        required = set(schema.get("required") or ())
        items: list[tuple[str, bool, str | int]] = []
        for key, sub in props.items():
            sub = sub if isinstance(sub, dict) else {}
            enum = sub.get("enum")
            if isinstance(enum, list) and enum and all(isinstance(v, str) for v in enum):
                alts = " | ".join(literal_text(v) for v in enum)
                value: str | int = f"{q} ( {alts} ) {q}".strip()
            elif sub.get("type") == "string" and "enum" not in sub:
                high = sub.get("maxLength")
                span = f"{{0,{int(high)}}}" if isinstance(high, int) else "*"
                value = f"{q} [^<]{span} {q}".strip()
            elif sub.get("type") in ("number", "integer", "boolean", "null") or "enum" in sub:
                value = len(values)
                values.append((sub, f"{where}.properties.{key}"))
            else:
                value = "g-value" if quote else "xml-json"
            items.append((key, key in required, value))
        items.sort(key=lambda item: not item[1])  # the required ones first
        if sep and items and not items[0][1]:
            # None required: the first is written, so no separator leads.
            items[0] = (items[0][0], True, items[0][2])
        plans.append(items)
    value_names, value_rules = schema_rules(values) if values else ([], "")
    texts.append(value_rules)
    texts.append(GEMMA_VALUES if quote else "xml-json ::= [^<]*\n")
    for t, items in enumerate(plans):
        parts = []
        for n, (key, needed, value) in enumerate(items):
            rule = value_names[value] if isinstance(value, int) else value
            part = pair(key, rule)
            if sep and n:
                part = f"{sep} {part}"
            parts.append(part if needed else f"( {part} )?")
        body = " ".join(p for p in (wrap[0], *parts, wrap[1]) if p) or '""'
        name = f"{tag}-args-{t}"
        texts.append(f"{name} ::= {body}\n")
        names.append(name)
    return "".join(texts), names
