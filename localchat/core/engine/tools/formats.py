"""How each family of models writes a tool call, told from its chat
template, and the calls read back from the text it wrote.

- ``hermes``: ``<tool_call>{"name": .., "arguments": {..}}</tool_call>``
  (Hermes, Qwen 2.5, QwQ, Granite);
- ``qwen-xml``: ``<tool_call><function=N><parameter=K>value</parameter>
  </function></tool_call>`` (Qwen 3.5, Qwen3-Coder);
- ``llama3``: the whole reply is ``{"name": .., "parameters": {..}}``, maybe
  after ``<|python_tag|>`` (Llama 3.1 to 3.3);
- ``mistral``: ``[TOOL_CALLS][{"name": .., "arguments": {..}}]`` (Mistral 7B
  v0.3, Nemo);
- ``mistral-args``: ``[TOOL_CALLS]name[ARGS]{..}`` (Mistral Small 3.2, Magistral);
- ``gemma4``: ``<|tool_call>call:name{key:<|"|>text<|"|>}<tool_call|>`` (Gemma 4);
- ``generic``: a template without tools: Hermes' format, taught by a system
  prompt of ours (``prompting.py``).

A format reads a call *region*: from its opening marker (:meth:`ToolFormat.start`)
to the end of the call. :meth:`ToolFormat.take` answers, for the text of a
region so far, the calls complete in it and how much of it they used, that
it needs more text, or that it is not a call after all (it is then the
reply's text). The same reading serves a whole reply and a stream.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from localchat.core.engine.tools.calls import ToolCall, new_id

Taken = tuple[list[ToolCall], int] | None
"""What :meth:`ToolFormat.take` found: the calls and the characters they
used (none and 0: more text is needed), or None: not a call."""

_DECODER = json.JSONDecoder()


class ToolFormat:
    name = ""
    opening: tuple[str, ...] = ()
    """The texts a call region starts with."""
    markers: tuple[str, ...] = ()
    """Texts that are special tokens in the family's vocabulary and must be
    shown in the reply's text to be parsed."""

    def start(self, text: str, at_start: bool) -> int | None:
        """Where a call region starts in ``text`` (None: nowhere);
        ``at_start``: nothing of the reply has been said before ``text``."""
        found = [i for i in (text.find(o) for o in self.opening) if i >= 0]
        return min(found) if found else None

    def held(self, text: str, at_start: bool) -> int:
        """How many characters at the end of ``text`` may be the start of a
        region, to hold back while streaming."""
        for n in range(min(len(text), max(map(len, self.opening))), 0, -1):
            tail = text[-n:]
            if any(o.startswith(tail) for o in self.opening):
                return n
        return 0

    def take(self, region: str, final: bool, tools: Sequence[Mapping[str, Any]]) -> Taken:
        raise NotImplementedError


def _call(name: Any, arguments: Any, call_id: Any = "") -> ToolCall | None:
    """A call from parsed parts; None when they are not one."""
    if not isinstance(name, str) or not name:
        return None
    if arguments is None:
        arguments = {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    if not isinstance(arguments, dict):
        return None
    text = json.dumps(arguments, ensure_ascii=False)
    return ToolCall(name, text, call_id if isinstance(call_id, str) and call_id else new_id())


def _json_at(text: str, i: int) -> tuple[Any, int] | None:
    """The JSON value at ``text[i:]`` (whitespace first allowed) and where it
    ends; None when there is none (yet)."""
    while i < len(text) and text[i].isspace():
        i += 1
    try:
        return _DECODER.raw_decode(text, i)
    except ValueError:
        return None


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i


class Hermes(ToolFormat):
    name = "hermes"
    opening = ("<tool_call>",)
    markers: tuple[str, ...] = ("<tool_call>", "</tool_call>")
    close = "</tool_call>"

    def take(self, region: str, final: bool, tools: Sequence[Mapping[str, Any]]) -> Taken:
        body_start = len(self.opening[0])
        end = region.find(self.close, body_start)
        if end < 0 and not final:
            return [], 0
        body = region[body_start : end if end >= 0 else len(region)]
        call = self.read(body.strip(), tools)
        if call is None:
            return None
        used = _skip_space(region, end + len(self.close)) if end >= 0 else len(region)
        return [call], used

    def read(self, body: str, tools: Sequence[Mapping[str, Any]]) -> ToolCall | None:
        try:
            value = json.loads(body)
        except ValueError:
            return None
        if not isinstance(value, dict):
            return None
        return _call(value.get("name"), value.get("arguments", value.get("parameters")))


class Generic(Hermes):
    """Templates without tools: our system prompt teaches Hermes' format."""

    name = "generic"
    markers = ()


class QwenXml(Hermes):
    name = "qwen-xml"
    _function = re.compile(r"<function=([^>\n]+)>(.*?)</function>", re.S)
    _parameter = re.compile(r"<parameter=([^>\n]+)>\n?(.*?)\n?</parameter>", re.S)

    def read(self, body: str, tools: Sequence[Mapping[str, Any]]) -> ToolCall | None:
        match = self._function.match(body)
        if match is None:
            return None
        name = match.group(1).strip()
        kinds = _property_types(tools, name)
        args: dict[str, Any] = {}
        for key, raw in self._parameter.findall(match.group(2)):
            key = key.strip()
            args[key] = raw if kinds.get(key) == "string" else _loose_value(raw)
        return _call(name, args)


def _property_types(tools: Sequence[Mapping[str, Any]], name: str) -> dict[str, Any]:
    for tool in tools:
        fn = tool.get("function") or {}
        if fn.get("name") == name:
            props = (fn.get("parameters") or {}).get("properties") or {}
            return {k: v.get("type") for k, v in props.items() if isinstance(v, dict)}
    return {}


def _loose_value(raw: str) -> Any:
    """A parameter's text as the value it spells (JSON), else as text."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


class Llama3(ToolFormat):
    """The call is the whole reply: a JSON object (after ``<|python_tag|>``
    when the model writes it)."""

    name = "llama3"
    opening = ("<|python_tag|>", "{")
    markers = ("<|python_tag|>",)

    def start(self, text: str, at_start: bool) -> int | None:
        if not at_start:
            return None
        i = _skip_space(text, 0)
        rest = text[i:]
        return i if rest.startswith(self.opening) else None

    def held(self, text: str, at_start: bool) -> int:
        if not at_start:
            return 0
        rest = text.lstrip()
        if not rest or "<|python_tag|>".startswith(rest):
            return len(text)
        return 0

    def take(self, region: str, final: bool, tools: Sequence[Mapping[str, Any]]) -> Taken:
        i = len("<|python_tag|>") if region.startswith("<|python_tag|>") else 0
        calls: list[ToolCall] = []
        while True:
            i = _skip_space(region, i)
            if i < len(region) and region[i] == ";":
                i += 1
                continue
            if i >= len(region):
                return (calls, i) if final or calls else ([], 0)
            found = _json_at(region, i)
            if found is None:
                if final:
                    return (calls, i) if calls else None
                return (calls, i) if calls else ([], 0)
            value, end = found
            if not isinstance(value, dict):
                return None if not calls else (calls, i)
            call = _call(value.get("name"), value.get("parameters", value.get("arguments")))
            if call is None:
                return None if not calls else (calls, i)
            calls.append(call)
            i = end


class Mistral(ToolFormat):
    name = "mistral"
    opening = ("[TOOL_CALLS]",)
    markers = ("[TOOL_CALLS]",)

    def take(self, region: str, final: bool, tools: Sequence[Mapping[str, Any]]) -> Taken:
        found = _json_at(region, len(self.opening[0]))
        if found is None:
            return None if final else ([], 0)
        value, end = found
        items = value if isinstance(value, list) else [value]
        calls = []
        for item in items:
            if not isinstance(item, dict):
                return None
            call = _call(item.get("name"), item.get("arguments"), item.get("id"))
            if call is None:
                return None
            calls.append(call)
        return calls, _skip_space(region, end)


class MistralArgs(ToolFormat):
    name = "mistral-args"
    opening = ("[TOOL_CALLS]",)
    markers = ("[TOOL_CALLS]", "[ARGS]", "[CALL_ID]")

    def take(self, region: str, final: bool, tools: Sequence[Mapping[str, Any]]) -> Taken:
        i = len(self.opening[0])
        args_at = region.find("[ARGS]", i)
        if args_at < 0:
            return None if final else ([], 0)
        head = region[i:args_at]
        name, _, call_id = head.partition("[CALL_ID]")
        found = _json_at(region, args_at + len("[ARGS]"))
        if found is None:
            return None if final else ([], 0)
        value, end = found
        call = _call(name.strip(), value, call_id.strip())
        return None if call is None else ([call], _skip_space(region, end))


class Gemma4(ToolFormat):
    name = "gemma4"
    opening = ("<|tool_call>",)
    markers = ("<|tool_call>", "<tool_call|>", '<|"|>')
    close = "<tool_call|>"

    def take(self, region: str, final: bool, tools: Sequence[Mapping[str, Any]]) -> Taken:
        end = region.find(self.close)
        if end < 0 and not final:
            return [], 0
        body = region[len(self.opening[0]) : end if end >= 0 else len(region)].strip()
        if not body.startswith("call:") or "{" not in body:
            return None
        name, brace, rest = body[len("call:") :].partition("{")
        try:
            value, used = _GemmaReader(brace + rest).value(0)
        except ValueError:
            return None
        if not isinstance(value, dict) or (brace + rest)[used:].strip():
            return None
        call = _call(name.strip(), value)
        if call is None:
            return None
        return [call], _skip_space(region, end + len(self.close)) if end >= 0 else len(region)


class _GemmaReader:
    """Gemma 4's argument syntax: JSON with bare keys and strings between
    ``<|"|>`` markers."""

    QUOTE = '<|"|>'

    def __init__(self, text: str) -> None:
        self.text = text

    def value(self, i: int) -> tuple[Any, int]:
        t = self.text
        i = _skip_space(t, i)
        if t.startswith(self.QUOTE, i):
            end = t.find(self.QUOTE, i + len(self.QUOTE))
            if end < 0:
                raise ValueError("unterminated string")
            return t[i + len(self.QUOTE) : end], end + len(self.QUOTE)
        if t.startswith("{", i):
            return self._items(i + 1, "}", keyed=True)
        if t.startswith("[", i):
            return self._items(i + 1, "]", keyed=False)
        match = re.compile(r"[^,}\]\s]+").match(t, i)
        if match is None:
            raise ValueError("no value")
        return json.loads(match.group(0)), match.end()

    def _items(self, i: int, close: str, keyed: bool) -> tuple[Any, int]:
        t = self.text
        out: Any = {} if keyed else []
        i = _skip_space(t, i)
        if t.startswith(close, i):
            return out, i + 1
        while True:
            if keyed:
                colon = t.find(":", i)
                if colon < 0:
                    raise ValueError("no key")
                key = t[i:colon].strip().removeprefix(self.QUOTE).removesuffix(self.QUOTE)
                item, i = self.value(colon + 1)
                out[key] = item
            else:
                item, i = self.value(i)
                out.append(item)
            i = _skip_space(t, i)
            if t.startswith(",", i):
                i += 1
                continue
            if t.startswith(close, i):
                return out, i + 1
            raise ValueError("bad separator")


FORMATS: dict[str, ToolFormat] = {
    f.name: f
    for f in (Hermes(), Generic(), QwenXml(), Llama3(), Mistral(), MistralArgs(), Gemma4())
}


def detect(source: str, reads_tools: bool) -> ToolFormat:
    """The format a chat template's model writes calls in (``reads_tools``:
    the template takes a ``tools`` variable; if not, :class:`Generic`)."""
    if not reads_tools:
        return FORMATS["generic"]
    if "[TOOL_CALLS]" in source:
        return FORMATS["mistral-args" if "[ARGS]" in source else "mistral"]
    if "<|tool_call>" in source:
        return FORMATS["gemma4"]
    if "<tool_call>" in source:
        return FORMATS["qwen-xml" if "<function=" in source else "hermes"]
    if "<|python_tag|>" in source or '"parameters": ' in source:
        return FORMATS["llama3"]
    return FORMATS["generic"]


def parse(
    fmt: ToolFormat, text: str, tools: Sequence[Mapping[str, Any]]
) -> tuple[str, list[ToolCall]]:
    """A whole reply's text and its calls."""
    from localchat.core.engine.tools.stream import ToolStream

    stream = ToolStream(fmt, tools)
    events = [*stream.feed(text), *stream.finish()]
    content = "".join(e for e in events if isinstance(e, str))
    return content, stream.calls
