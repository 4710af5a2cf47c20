"""Reading and checking request bodies: JSON within a size limit, messages,
and the generation settings a request may set, checked by their one
declaration (``core/params.py``): its ranges and its own validation, so an
out-of-range value is a 400 naming the request's field and the range."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from localchat.core import params
from localchat.core.checks import shown
from localchat.core.engine.json_grammar import JSON_OBJECT_GRAMMAR, schema_grammar
from localchat.core.engine.protocol import MAX_TOP_LOGPROBS, Message, Tool
from localchat.core.engine.tools.calls import NAME, tool_names
from localchat.core.errors import SettingError
from localchat.server.errors import ApiError

MAX_BODY_BYTES = 4 * 2**20
"""A request body over this is refused (413)."""

OPENAI_SETTINGS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "seed": "seed",
    "max_tokens": "max_tokens",
    "max_completion_tokens": "max_tokens",
    # Not OpenAI's, but what llama.cpp's own server and others accept too.
    "top_k": "top_k",
    "min_p": "min_p",
    "repeat_penalty": "repeat_penalty",
    "thinking": "thinking",
    "reasoning_effort": "reasoning_effort",
}
"""A chat completion's fields that set a generation setting: field -> setting."""

OLLAMA_OPTIONS = {
    "temperature": "temperature",
    "top_k": "top_k",
    "top_p": "top_p",
    "min_p": "min_p",
    "seed": "seed",
    "num_predict": "max_tokens",
    "repeat_penalty": "repeat_penalty",
}
"""Ollama's ``options`` that set a generation setting: option -> setting."""


@dataclass
class ChatRequest:
    """What a chat request asks of the engine, checked."""

    model: str
    messages: list[Message]
    settings: dict[str, Any] = field(default_factory=dict)
    """Generation settings the request sets (checked), over the model's own."""
    stop: tuple[str, ...] = ()
    stream: bool = False
    include_usage: bool = False
    logprobs: bool = False
    top_logprobs: int = 0
    grammar: str | None = None
    """The GBNF grammar the reply must follow (``response_format`` / Ollama's
    ``format``): JSON, or JSON valid against a schema."""
    tools: tuple[Tool, ...] = ()
    """The functions the model may call (none with ``tool_choice`` "none")."""
    tool_choice: str = "auto"
    """"auto" (the model decides), "required" (at least one call), or the
    name of the one function it must call."""
    parallel: bool = True
    """Whether the model may make several calls at once (OpenAI's
    ``parallel_tool_calls``; held to one by the grammar where it is one)."""
    raw: str | None = None
    """A text completion's prompt (``/v1/completions``), in place of messages."""
    echo: bool = False
    """A text completion's prompt said again before its completion."""


async def read_json(request: Request) -> dict[str, Any]:
    """The body as a JSON object: 413 over :data:`MAX_BODY_BYTES`, 400 when it
    is not a JSON object."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise _too_big()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_big()
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


def _too_big() -> ApiError:
    return ApiError(
        413, f"the request body is over {MAX_BODY_BYTES // 2**20} MB", code="request_too_large"
    )


def setting(field_name: str, name: str, value: Any) -> Any:
    """``value`` for the setting ``name``, as the request's ``field_name``
    gave it, checked by the setting's declaration."""
    try:
        checked = params.GenerationSettings().replace(**{name: value})
    except SettingError as exc:
        spec = params.spec(name)
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and spec.minimum is not None and spec.maximum is not None:
            message = (
                f"{field_name} must be between {shown(spec.minimum)} and "
                f"{shown(spec.maximum)}, got {value!r}"
            )
        else:
            message = str(exc).replace(name, field_name, 1)
        raise ApiError(400, message, param=field_name, code="invalid_value") from None
    return getattr(checked, name)


def settings_from(body: Mapping[str, Any], fields: Mapping[str, str]) -> dict[str, Any]:
    """The settings named in ``fields`` that ``body`` gives (null: not given)."""
    return {
        name: setting(key, name, body[key])
        for key, name in fields.items()
        if body.get(key) is not None
    }


def text_field(body: Mapping[str, Any], key: str, *, required: bool = True) -> str:
    value = body.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise ApiError(400, f"{key} is required and must be text", param=key)
    return value


def flag(body: Mapping[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ApiError(400, f"{key} must be true or false, got {value!r}", param=key)
    return value


def stops(value: Any, key: str = "stop") -> tuple[str, ...]:
    """``stop``: a string or a list of strings (null or none: no stop strings)."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(s, str) and s for s in items):
        raise ApiError(400, f"{key} must be a string or a list of strings", param=key)
    return tuple(items)


def messages(value: Any, *, key: str = "messages") -> list[Message]:
    """OpenAI's or Ollama's messages as the engine takes them: system (or
    developer), user, assistant (with its tool calls) and tool results;
    content as text or text parts; an assistant's null content is empty."""
    if not isinstance(value, list) or not value:
        raise ApiError(400, f"{key} must be a non-empty list of messages", param=key)
    out: list[Message] = []
    for i, m in enumerate(value):
        where = f"{key}[{i}]"
        if not isinstance(m, dict):
            raise ApiError(400, f"{where} must be an object", param=where)
        role = m.get("role")
        if role == "developer":
            role = "system"
        if role not in ("system", "user", "assistant", "tool"):
            raise ApiError(
                400,
                f"{where}.role must be system, user, assistant or tool, got {role!r}",
                param=f"{where}.role",
            )
        calls = m.get("tool_calls") if role == "assistant" else None
        content = _content(m.get("content"), role, f"{where}.content")
        message: Message = {"role": role, "content": content}
        thought = m.get("reasoning_content", m.get("thinking"))
        if role == "assistant" and isinstance(thought, str) and thought:
            message["reasoning"] = thought
        if calls:
            message["tool_calls"] = _calls(calls, f"{where}.tool_calls")
        if role == "tool":
            call_id = m.get("tool_call_id")
            if call_id is not None and not isinstance(call_id, str):
                raise ApiError(400, f"{where}.tool_call_id must be text", param=where)
            message["tool_call_id"] = call_id or ""
            name = m.get("name", m.get("tool_name"))
            if isinstance(name, str) and name:
                message["name"] = name
        if m.get("images"):
            raise ApiError(400, f"{where}: images are not supported yet", param=where)
        out.append(message)
    return out


def _calls(value: Any, where: str) -> list[dict[str, Any]]:
    """An assistant's tool calls (OpenAI's, arguments as JSON text, or
    Ollama's, arguments as an object), in OpenAI's shape."""
    if not isinstance(value, list):
        raise ApiError(400, f"{where} must be a list", param=where)
    out = []
    for j, call in enumerate(value):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise ApiError(400, f"{where}[{j}].function.name is required", param=f"{where}[{j}]")
        arguments = fn.get("arguments", {})
        if isinstance(arguments, dict):
            arguments = json.dumps(arguments, ensure_ascii=False)
        if not isinstance(arguments, str):
            raise ApiError(
                400, f"{where}[{j}].function.arguments must be JSON text", param=f"{where}[{j}]"
            )
        call_id = call.get("id") or f"call{j}"
        out.append(
            {
                "id": str(call_id),
                "type": "function",
                "function": {"name": fn["name"], "arguments": arguments},
            }
        )
    return out


def _content(value: Any, role: str, where: str) -> str:
    if value is None and role in ("assistant", "tool"):
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for part in value:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise ApiError(
                    400, f"{where}: only text parts are supported (no images yet)", param=where
                )
            texts.append(str(part.get("text", "")))
        return "".join(texts)
    raise ApiError(400, f"{where} must be text", param=where)


def response_format_error(message: str, param: str = "response_format") -> ApiError:
    return ApiError(400, message, param=param)


def response_grammar(fmt: Any) -> str | None:
    """OpenAI's ``response_format``: ``text`` (none), ``json_object`` (any
    JSON object) or ``json_schema`` (valid against ``json_schema.schema``),
    as the grammar that enforces it; a schema part the grammar cannot
    enforce is a 400 naming it."""
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise response_format_error("response_format must be an object")
    kind = fmt.get("type", "text")
    if kind == "text":
        return None
    if kind == "json_object":
        return JSON_OBJECT_GRAMMAR
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict | bool):
            raise response_format_error(
                "response_format.json_schema.schema must be a JSON schema",
                "response_format.json_schema",
            )
        return schema_to_grammar(spec["schema"], "response_format.json_schema.schema")
    raise response_format_error(
        f"response_format type must be text, json_object or json_schema, got {kind!r}",
        "response_format.type",
    )


def schema_to_grammar(schema: Any, param: str) -> str:
    try:
        return schema_grammar(schema)
    except SettingError as exc:
        raise ApiError(400, f"{param}: {exc}", param=param) from None


def tool_list(value: Any) -> tuple[Tool, ...]:
    """``tools``: functions, each with a name (OpenAI's characters) and an
    optional description and parameters schema."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ApiError(400, "tools must be a list of functions", param="tools")
    out: list[Tool] = []
    seen: set[str] = set()
    for i, tool in enumerate(value):
        where = f"tools[{i}]"
        fn = tool.get("function") if isinstance(tool, dict) else None
        if (
            not isinstance(tool, dict)
            or tool.get("type", "function") != "function"
            or not isinstance(fn, dict)
        ):
            raise ApiError(
                400, f'{where} must be {{"type": "function", "function": {{...}}}}', param=where
            )
        name = fn.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise ApiError(
                400,
                f"{where}.function.name must be 1 to 64 letters, digits, _ . or -, got {name!r}",
                param=f"{where}.function.name",
            )
        if name in seen:
            raise ApiError(400, f"{where}: two functions are named {name!r}", param=where)
        seen.add(name)
        schema = fn.get("parameters")
        if schema is not None and not isinstance(schema, dict):
            raise ApiError(
                400,
                f"{where}.function.parameters must be a JSON schema",
                param=f"{where}.function.parameters",
            )
        clean: dict[str, Any] = {"name": name}
        if isinstance(fn.get("description"), str):
            clean["description"] = fn["description"]
        clean["parameters"] = schema if schema is not None else {"type": "object", "properties": {}}
        out.append({"type": "function", "function": clean})
    return tuple(out)


def tool_choice(value: Any, tools: tuple[Tool, ...]) -> str:
    """``tool_choice``: "auto", "none", "required" or ``{"type": "function",
    "function": {"name": ...}}`` naming one of ``tools``."""
    if value is None:
        return "auto" if tools else "none"
    if value in ("auto", "none", "required"):
        if value == "required" and not tools:
            raise ApiError(400, 'tool_choice "required" needs tools', param="tool_choice")
        return str(value)
    fn = value.get("function") if isinstance(value, dict) else None
    name = fn.get("name") if isinstance(fn, dict) else None
    if not isinstance(name, str):
        raise ApiError(
            400,
            'tool_choice must be "auto", "none", "required" or {"type": "function", '
            '"function": {"name": ...}}',
            param="tool_choice",
        )
    if name not in tool_names(tools):
        raise ApiError(
            400, f"tool_choice names {name!r}, which is not one of the tools", param="tool_choice"
        )
    return name


def openai_chat(body: Mapping[str, Any]) -> ChatRequest:
    """A ``/v1/chat/completions`` body, checked."""
    n = body.get("n")
    if n is not None and n != 1:
        raise ApiError(400, "n must be 1: several choices are not supported", param="n")
    if body.get("functions"):
        raise ApiError(
            400, "functions (the old API) are not supported: use tools", param="functions"
        )
    tools = tool_list(body.get("tools"))
    choice = tool_choice(body.get("tool_choice"), tools)
    grammar = response_grammar(body.get("response_format"))
    if grammar is not None and choice not in ("auto", "none"):
        raise ApiError(
            400, "response_format cannot be combined with a required tool call", param="tool_choice"
        )
    for penalty in ("frequency_penalty", "presence_penalty"):
        if body.get(penalty) not in (None, 0, 0.0):
            raise ApiError(400, f"{penalty} is not supported (use repeat_penalty)", param=penalty)
    top = body.get("top_logprobs")
    if top is None:
        top = 0
    if not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= MAX_TOP_LOGPROBS:
        raise ApiError(
            400,
            f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}, got {top!r}",
            param="top_logprobs",
        )
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise ApiError(400, "stream_options must be an object", param="stream_options")
    return ChatRequest(
        model=text_field(body, "model"),
        messages=messages(body.get("messages")),
        settings=settings_from(body, OPENAI_SETTINGS),
        stop=stops(body.get("stop")),
        stream=flag(body, "stream", False),
        include_usage=flag(options, "include_usage", False),
        logprobs=flag(body, "logprobs", False) or top > 0,
        top_logprobs=top,
        grammar=grammar,
        tools=() if choice == "none" else tools,
        tool_choice=choice,
        parallel=flag(body, "parallel_tool_calls", True),
    )


def ollama_chat(body: Mapping[str, Any], *, generate: bool = False) -> ChatRequest:
    """An ``/api/chat`` body (or ``/api/generate``'s, its prompt one user
    message after any system text), checked; Ollama streams unless told not to."""
    raw = None
    tools: tuple[Tool, ...] = ()
    if generate:
        msgs: list[Message] = []
        system = text_field(body, "system", required=False)
        if flag(body, "raw", False):
            raw = text_field(body, "prompt")  # no template: the text as it is
        else:
            if system:
                msgs.append({"role": "system", "content": system})
            msgs.append({"role": "user", "content": text_field(body, "prompt")})
    else:
        msgs = messages(body.get("messages"))
        tools = tool_list(body.get("tools"))
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise ApiError(400, "options must be an object", param="options")
    known = {k: v for k, v in options.items() if k in OLLAMA_OPTIONS}
    if isinstance(known.get("num_predict"), int) and known["num_predict"] < 0:
        del known["num_predict"]  # -1: no limit, -2: fill the context; the model's own
    chosen = settings_from(known, OLLAMA_OPTIONS)
    think = body.get("think")
    if think is not None:
        if not isinstance(think, bool):
            raise ApiError(400, f"think must be true or false, got {think!r}", param="think")
        chosen["thinking"] = "on" if think else "off"
    fmt = body.get("format")
    grammar = None
    if fmt == "json":
        grammar = JSON_OBJECT_GRAMMAR
    elif isinstance(fmt, dict):
        grammar = schema_to_grammar(fmt, "format")
    elif fmt not in (None, ""):
        raise ApiError(400, 'format must be "json" or a JSON schema', param="format")
    return ChatRequest(
        model=text_field(body, "model"),
        messages=msgs,
        settings=chosen,
        stop=stops(options.get("stop"), "options.stop"),
        stream=flag(body, "stream", True),
        grammar=grammar,
        tools=tools,
        tool_choice="auto" if tools else "none",
        raw=raw,
    )


COMPLETION_MAX_TOKENS = 16
"""OpenAI's default ``max_tokens`` for a text completion (the clients'
scripts count on it)."""


def openai_completion(body: Mapping[str, Any]) -> ChatRequest:
    """A ``/v1/completions`` body, checked: one prompt (text, or a list of
    one text), the chat's samplers, ``logprobs`` as a number of candidates."""
    n = body.get("n")
    if n is not None and n != 1:
        raise ApiError(400, "n must be 1: several choices are not supported", param="n")
    best = body.get("best_of")
    if best is not None and best != 1:
        raise ApiError(400, "best_of must be 1: it is not supported", param="best_of")
    if body.get("suffix"):
        raise ApiError(400, "suffix (inserting text) is not supported", param="suffix")
    for penalty in ("frequency_penalty", "presence_penalty"):
        if body.get(penalty) not in (None, 0, 0.0):
            raise ApiError(400, f"{penalty} is not supported (use repeat_penalty)", param=penalty)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if isinstance(prompt, list):
        raise ApiError(
            400, "prompt must be one text: several prompts are not supported", param="prompt"
        )
    if not isinstance(prompt, str) or not prompt:
        raise ApiError(400, "prompt is required and must be text", param="prompt")
    top = body.get("logprobs")
    if top is None or top is False:
        top = -1
    if top is True:
        top = 0
    if not isinstance(top, int) or not -1 <= top <= MAX_TOP_LOGPROBS:
        raise ApiError(
            400, f"logprobs must be between 0 and {MAX_TOP_LOGPROBS}, got {top!r}", param="logprobs"
        )
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise ApiError(400, "stream_options must be an object", param="stream_options")
    chosen = settings_from(body, OPENAI_SETTINGS)
    chosen.setdefault("max_tokens", COMPLETION_MAX_TOKENS)
    return ChatRequest(
        model=text_field(body, "model"),
        messages=[],
        settings=chosen,
        stop=stops(body.get("stop")),
        stream=flag(body, "stream", False),
        include_usage=flag(options, "include_usage", False),
        logprobs=top >= 0,
        top_logprobs=max(top, 0),
        raw=prompt,
        echo=flag(body, "echo", False),
    )


MAX_EMBEDDING_INPUTS = 2048


def embedding_input(value: Any, key: str = "input") -> list[str]:
    """``input``: a text or a list of texts (token ids are not taken)."""
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise ApiError(400, f"{key} must be a text or a non-empty list of texts", param=key)
    if len(texts) > MAX_EMBEDDING_INPUTS:
        raise ApiError(
            400, f"{key} holds {len(texts)} texts; at most {MAX_EMBEDDING_INPUTS}", param=key
        )
    return texts
