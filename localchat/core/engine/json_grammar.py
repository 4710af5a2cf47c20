"""GBNF grammars (llama.cpp's grammar format) that make a model write JSON:
any JSON object (:data:`JSON_OBJECT_GRAMMAR`, OpenAI's ``response_format``
``{"type": "json_object"}``) or a value valid under a JSON schema
(:func:`schema_grammar`, ``{"type": "json_schema", ...}``). The grammar is
enforced while sampling (the worker gives it to llama.cpp's grammar sampler),
so a reply that ends by itself always parses, and validates.

Why not llama-cpp-python's converter (``llama_cpp.llama_grammar``)? Importing
it loads the C library (only the worker may: see the import-linter contract),
and its string rule (``[^"\\\\]``) lets raw control characters into strings:
a random or confused model writes a raw tab or ``\\x07`` inside a string and
strict parsers (``json.loads`` among them) reject the whole reply. The
primitive rules here are those of llama.cpp's own converter
(``examples/json_schema_to_grammar.py`` and ``common/json-schema-to-grammar.cpp``
at ggml-org/llama.cpp commit 17ea1adc971f32271f18f4eed89cb07bf6341933, MIT):
a string character is anything but ``"``, ``\\``, DEL and the C0 controls, or
an escape. Deliberate differences: ``\\/`` is allowed (JSON has it); a
``\\u`` escape never names a UTF-16 surrogate (a lone one is invalid Unicode
that strict parsers refuse, a pair would count as one character against
``minLength``); the characters allowed are listed, not excluded (see
``char`` below); an exponent has at most two digits.

The schema walk is our own, small and strict: what it cannot enforce (a
``pattern``, numeric bounds, ``uniqueItems``...) is refused with a one-line
:class:`~localchat.core.errors.SettingError` naming the keyword and where it
is, rather than ignored (the reply would then not validate). Annotations
(``title``, ``description``...) and keywords JSON Schema itself ignores are
ignored. Allowed-but-optional things are simply not generated: an object with
``properties`` gets only those (extra properties, even where allowed, are
never written), which keeps every reply valid.
"""

from __future__ import annotations

import json
import re
from typing import Any

from localchat.core.errors import SettingError

SPACE = '| " " | "\\n"{1,2} [ \\t]{0,20}'
"""Whitespace between tokens, bounded so a model cannot run away in it."""

PRIMITIVES: dict[str, str] = {
    "space": SPACE,
    "boolean": '"true" | "false"',
    "null": '"null"',
    "integral-part": "[0] | [1-9] [0-9]{0,15}",
    "decimal-part": "[0-9]{1,16}",
    "integer": '"-"? integral-part',
    # An exponent of at most two digits (llama.cpp allows 16): every number
    # then fits a double, so no parser reads it back as infinity.
    "number": '"-"? integral-part ("." decimal-part)? ([eE] [-+]? [0-9]{1,2})?',
    # Any character but ", \, DEL and the C0 controls (llama.cpp's rule), or
    # an escape; \u never a surrogate (D800-DFFF). Spelled as the characters
    # allowed rather than llama.cpp's [^"\\\x7F\x00-\x1F]: the grammar reads a
    # byte-level token stream as UTF-8, and only a positive class keeps out
    # what is not Unicode (an encoded surrogate, a code point past U+10FFFF),
    # which Python decodes as U+FFFDs that break a maxLength. Left: a
    # non-ASCII character spelled in an overlong form (E0 80-9F.., F0 80-8F..)
    # reads as that character to llama.cpp and as U+FFFDs to Python; the
    # reply still parses (llama.cpp refuses an overlong ASCII character, so
    # no quote or bracket can be faked), but a maxLength may be overrun.
    "char": (
        "[\\x20\\x21\\x23-\\x5B\\x5D-\\x7E\\u0080-\\uD7FF\\uE000-\\U0010FFFF] "
        '| "\\\\" (["\\\\/bfnrt] | "u" hex-no-surrogate)'
    ),
    "hex-no-surrogate": ("([0-9a-cA-CefEF] [0-9a-fA-F]{3} | [dD] [0-7] [0-9a-fA-F]{2})"),
    "string": '"\\"" char* "\\""',
    "value": "object | array | string | number | boolean | null",
    "object": (
        '"{" space ( string space ":" space value ( space "," space string space ":" space '
        'value )* )? space "}"'
    ),
    "array": '"[" space ( value ( space "," space value )* )? space "]"',
    # String formats llama.cpp's converter enforces.
    "date": '[0-9]{4} "-" ( "0" [1-9] | "1" [0-2] ) "-" ( "0" [1-9] | [1-2] [0-9] | "3" [0-1] )',
    "time": (
        '([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{3} )? '
        '( "Z" | ( "+" | "-" ) ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] )'
    ),
    "date-time": 'date "T" time',
    "uuid": (
        '[0-9a-fA-F]{8} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} '
        '"-" [0-9a-fA-F]{12}'
    ),
}

_DEPENDS: dict[str, tuple[str, ...]] = {
    "integer": ("integral-part",),
    "number": ("integral-part", "decimal-part"),
    "char": ("hex-no-surrogate",),
    "string": ("char",),
    "value": ("object", "array", "string", "number", "boolean", "null"),
    "object": ("space", "string", "value"),
    "array": ("space", "value"),
    "date-time": ("date", "time"),
}

FORMATS = ("date", "time", "date-time", "uuid")
"""String formats enforced; any other ``format`` is an annotation (JSON
Schema's default: validators do not check it) and the string is free."""

ANNOTATIONS = frozenset(
    {
        "$schema",
        "$id",
        "$anchor",
        "$comment",
        "$defs",
        "definitions",
        "title",
        "description",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
        "format",
        "contentMediaType",
        "contentEncoding",
    }
)
"""Keywords that never constrain a value (``format`` is handled apart)."""

UNSUPPORTED = frozenset(
    {
        "pattern",
        "patternProperties",
        "propertyNames",
        "minProperties",
        "maxProperties",
        "dependentRequired",
        "dependentSchemas",
        "dependencies",
        "unevaluatedProperties",
        "unevaluatedItems",
        "prefixItems",
        "contains",
        "minContains",
        "maxContains",
        "uniqueItems",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "not",
        "if",
        "then",
        "else",
        "$dynamicRef",
        "$recursiveRef",
    }
)
"""Validation keywords a grammar here cannot enforce: refused, never ignored
(``uniqueItems: false`` is no constraint and passes)."""

_TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")


def schema_grammar(schema: dict[str, Any] | bool) -> str:
    """The GBNF grammar of the JSON values valid under ``schema`` (the root
    rule is ``root``); a one-line :class:`SettingError` for a schema, or part
    of one, it cannot enforce."""
    if not isinstance(schema, dict | bool):
        raise SettingError("the JSON schema must be an object")
    converter = _Converter(schema)
    converter.rules["root"] = converter.visit(schema, "", "#")
    return converter.text()


def schema_rules(schemas: list[tuple[Any, str]]) -> tuple[list[str], str]:
    """Rules for the values valid under each of several schemas (each with
    where it is, for errors), to use in a bigger grammar (tool calls):
    each schema's rule name, and the text of all the rules (none is
    ``root``). A one-line :class:`SettingError` as for :func:`schema_grammar`."""
    names: list[str] = []
    rules: dict[str, str] = {}
    for i, (schema, where) in enumerate(schemas):
        if not isinstance(schema, dict | bool):
            raise SettingError(f"{where} must be a JSON schema (an object)")
        converter = _Converter(schema, prefix=f"t{i}")
        try:
            expr = converter.visit(schema, "value", "#")
        except SettingError as exc:
            raise SettingError(f"{where}: {exc}") from None
        names.append(converter.add("value", expr, always=True))
        rules.update(converter.rules)
    return names, "".join(f"{name} ::= {body}\n" for name, body in rules.items())


class _Converter:
    def __init__(self, root: dict[str, Any] | bool, prefix: str = "") -> None:
        self.root = root
        self.prefix = prefix
        self.rules: dict[str, str] = {}
        self.refs: dict[str, str] = {}  # a $ref -> its rule's name

    def text(self) -> str:
        return "".join(f"{name} ::= {body}\n" for name, body in self.rules.items())

    # -- rules -------------------------------------------------------------------

    def primitive(self, name: str) -> str:
        if name not in self.rules:
            self.rules[name] = PRIMITIVES[name]
            for dep in _DEPENDS.get(name, ()):
                self.primitive(dep)
        return name

    def add(self, name: str, body: str, *, always: bool = False) -> str:
        """A rule with this body, named after ``name`` (made unique); its
        name, to use in other rules (``always``: a new rule, even where the
        body is another rule's)."""
        base = re.sub(r"[^a-zA-Z0-9-]+", "-", name).strip("-") or "value"
        base = f"s{self.prefix}-{base}"  # never a primitive's name
        key, i = base, 0
        while key in self.rules and (always or self.rules[key] != body):
            i += 1
            key = f"{base}-{i}"
        self.rules[key] = body
        return key

    # -- the schema ----------------------------------------------------------------

    def visit(self, schema: Any, name: str, where: str) -> str:
        """The rule (a name or an expression) for values valid under ``schema``."""
        if schema is True or schema == {}:
            return self.primitive("value")
        if schema is False:
            raise SettingError(f"the JSON schema at {where} allows no value")
        if not isinstance(schema, dict):
            raise SettingError(f"the JSON schema at {where} is not an object")
        refused = sorted(
            k for k in schema if k in UNSUPPORTED and (k, schema[k]) != ("uniqueItems", False)
        )
        if refused:
            raise SettingError(
                f"the JSON schema uses {refused[0]!r} at {where}, which structured output "
                "cannot enforce"
            )
        if "$ref" in schema:
            return self.ref(schema, where)
        if "allOf" in schema:
            parts = schema["allOf"]
            rest = {k for k in schema if k not in ANNOTATIONS and k != "allOf"}
            if not isinstance(parts, list) or len(parts) != 1 or rest:
                raise SettingError(
                    f"the JSON schema uses 'allOf' at {where} with more than one schema, "
                    "which structured output cannot enforce"
                )
            return self.visit(parts[0], name, f"{where}/allOf/0")
        for key in ("anyOf", "oneOf"):
            if key in schema:
                # oneOf as anyOf: exact for alternatives no value matches twice
                # (the usual case: different types, or objects told apart by a
                # const or enum property).
                alts = schema[key]
                if not isinstance(alts, list) or not alts:
                    raise SettingError(f"'{key}' at {where} must be a non-empty list")
                return self.add(
                    name or "root",
                    " | ".join(
                        self.visit(alt, f"{name}-{i}", f"{where}/{key}/{i}")
                        for i, alt in enumerate(alts)
                    ),
                )
        if "const" in schema:
            return literal(schema["const"])
        if "enum" in schema:
            values = schema["enum"]
            if not isinstance(values, list) or not values:
                raise SettingError(f"'enum' at {where} must be a non-empty list")
            return "(" + " | ".join(literal(v) for v in values) + ")"
        kind = schema.get("type")
        if isinstance(kind, list):
            if not kind:
                raise SettingError(f"'type' at {where} is an empty list")
            return self.add(
                name or "root",
                " | ".join(
                    self.typed(schema, str(t), f"{name}-{t}", where) for t in dict.fromkeys(kind)
                ),
            )
        if kind is None:
            kind = implied_type(schema)
            if kind is None:
                return self.primitive("value")
        return self.typed(schema, kind, name, where)

    def typed(self, schema: dict[str, Any], kind: str, name: str, where: str) -> str:
        if kind not in _TYPES:
            raise SettingError(f"unknown type {kind!r} at {where}")
        if kind == "object":
            return self.object(schema, name, where)
        if kind == "array":
            return self.array(schema, name, where)
        if kind == "string":
            return self.string(schema, name, where)
        return self.primitive(kind)

    def object(self, schema: dict[str, Any], name: str, where: str) -> str:
        props = schema.get("properties", {})
        required = schema.get("required", [])
        extra = schema.get("additionalProperties", True)
        if not isinstance(props, dict) or not isinstance(required, list):
            raise SettingError(f"'properties' or 'required' at {where} is malformed")
        missing = [k for k in required if k not in props]
        if missing:
            raise SettingError(
                f"the required property {missing[0]!r} at {where} is not among its 'properties'"
            )
        if not props:
            if extra is False:
                return literal({})
            if extra is True:
                return self.primitive("object")
            # A map: any keys, each value under the schema.
            value = self.visit(extra, f"{name}-value", f"{where}/additionalProperties")
            string, space = self.primitive("string"), self.primitive("space")
            pair = f'{string} {space} ":" {space} {value}'
            return self.add(
                name or "root",
                f'"{{" {space} ( {pair} ( {space} "," {space} {pair} )* )? {space} "}}"',
            )
        # Declared properties only, in their order; optional ones may be left out.
        space = self.primitive("space")
        kvs: list[tuple[str, bool]] = []
        for key, sub in props.items():
            value = self.visit(sub, f"{name}-{key}", f"{where}/properties/{pointer(key)}")
            kv = self.add(f"{name}-{key}-kv", f'{literal(key)} {space} ":" {space} {value}')
            kvs.append((kv, key in required))

        def after(i: int) -> str:
            """The properties from ``i`` on, once one has been written."""
            return " ".join(
                f'{space} "," {space} {kv}' if req else f'( {space} "," {space} {kv} )?'
                for kv, req in kvs[i:]
            )

        firsts: list[str] = []  # which property comes first: alternatives
        for i, (kv, req) in enumerate(kvs):
            firsts.append(f"{kv} {after(i + 1)}".strip())
            if req:
                break
        body = f"( {' | '.join(firsts)} )"
        if not kvs[len(firsts) - 1][1]:  # no property is required: {} too
            body += "?"
        return self.add(name or "root", f'"{{" {space} {body} {space} "}}"')

    def array(self, schema: dict[str, Any], name: str, where: str) -> str:
        item = self.visit(schema.get("items", True), f"{name}-item", f"{where}/items")
        low, high = schema.get("minItems", 0), schema.get("maxItems")
        if not isinstance(low, int) or (high is not None and not isinstance(high, int)):
            raise SettingError(f"'minItems' or 'maxItems' at {where} is not a whole number")
        if high is not None and high < low:
            raise SettingError(f"'maxItems' is less than 'minItems' at {where}")
        space = self.primitive("space")
        items = repeat(item, low, high, f'{space} "," {space}')
        return self.add(name or "root", f'"[" {space} {items} {space} "]"')

    def string(self, schema: dict[str, Any], name: str, where: str) -> str:
        fmt = schema.get("format")
        if fmt in FORMATS:
            return self.add(name or "root", f'"\\"" {self.primitive(fmt)} "\\""')
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        if low == 0 and high is None:
            return self.primitive("string")
        if not isinstance(low, int) or (high is not None and not isinstance(high, int)):
            raise SettingError(f"'minLength' or 'maxLength' at {where} is not a whole number")
        if high is not None and high < low:
            raise SettingError(f"'maxLength' is less than 'minLength' at {where}")
        chars = repeat(self.primitive("char"), low, high)
        return self.add(name or "root", f'"\\"" {chars} "\\""')

    def ref(self, schema: dict[str, Any], where: str) -> str:
        ref = schema["$ref"]
        rest = [k for k in schema if k not in ANNOTATIONS and k != "$ref"]
        if rest:
            raise SettingError(
                f"the JSON schema has {rest[0]!r} beside '$ref' at {where}, "
                "which structured output cannot enforce"
            )
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise SettingError(
                f"the JSON schema's $ref {ref!r} at {where} is not local (only '#/...' refs are)"
            )
        if ref not in self.refs:
            target = resolve(self.root, ref, where)
            # Named before it is visited: a recursive schema refers to it.
            key = self.add(f"ref-{ref[1:]}", f"<{ref}>")  # a placeholder
            self.refs[ref] = key
            self.rules[key] = self.visit(target, f"ref-{ref[1:]}", ref)
        return self.refs[ref]


def implied_type(schema: dict[str, Any]) -> str | None:
    """The type a schema without ``type`` is about, by its keywords (a value
    of another type would pass, but this one is what the schema describes)."""
    if {"properties", "required", "additionalProperties"} & schema.keys():
        return "object"
    if {"items", "minItems", "maxItems"} & schema.keys():
        return "array"
    if {"minLength", "maxLength"} & schema.keys() or schema.get("format") in FORMATS:
        return "string"
    return None


def resolve(root: Any, ref: str, where: str) -> Any:
    """The part of the schema a local ``$ref`` (a JSON pointer) names."""
    target = root
    for part in ref[1:].split("/")[1:] if ref != "#" else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(target, dict) and part in target:
            target = target[part]
        elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
            target = target[int(part)]
        else:
            raise SettingError(f"the JSON schema's $ref {ref!r} at {where} names nothing")
    return target


def pointer(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def literal(value: Any) -> str:
    """A GBNF literal that spells ``value`` as JSON (non-ASCII as itself)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def repeat(item: str, low: int, high: int | None, sep: str | None = None) -> str:
    """``item`` ``low`` to ``high`` (None: any number of) times, separated by ``sep``."""
    if high == 0:
        return ""
    if sep is None:
        return f"({item}){{{low},{'' if high is None else high}}}"
    more_low, more_high = max(low - 1, 0), None if high is None else high - 1
    seq = item
    if more_high != 0:
        seq += f" ({sep} {item}){{{more_low},{'' if more_high is None else more_high}}}"
    return seq if low > 0 else f"( {seq} )?"


JSON_OBJECT_GRAMMAR = "root ::= object\n" + "".join(
    f"{name} ::= {PRIMITIVES[name]}\n"
    for name in (
        "object",
        "value",
        "array",
        "string",
        "char",
        "hex-no-surrogate",
        "number",
        "integer",
        "integral-part",
        "decimal-part",
        "boolean",
        "null",
        "space",
    )
)
"""Any JSON object (OpenAI's ``json_object``): what the model puts in it is
free, but it parses, and its strings hold no raw control characters."""
