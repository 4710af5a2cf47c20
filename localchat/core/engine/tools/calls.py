"""A tool call, and the tools and messages of a request in the form chat
templates read them (as Hugging Face transformers passes them)."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ID_ALPHABET = string.ascii_letters + string.digits
ID_LENGTH = 9
"""A call's id: 9 letters and digits, what Mistral's templates insist on
(and any client takes)."""

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
"""A function's name, as OpenAI allows it."""


@dataclass(frozen=True)
class ToolCall:
    """A call the model made: the function's name and its arguments (JSON
    text of an object, as OpenAI's API carries them)."""

    name: str
    arguments: str
    id: str = ""

    def as_message_call(self) -> dict[str, Any]:
        """The call as an assistant message's ``tool_calls`` item (OpenAI's shape)."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


def new_id() -> str:
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))


def short_id(call_id: str) -> str:
    """``call_id`` as 9 letters and digits: itself if it is, else a digest
    of it (the same every time the conversation is sent)."""
    if len(call_id) == ID_LENGTH and call_id.isascii() and call_id.isalnum():
        return call_id
    return hashlib.sha256(call_id.encode()).hexdigest()[:ID_LENGTH]


def arguments_value(arguments: Any) -> Any:
    """A call's arguments as templates read them: an object (OpenAI's API
    sends JSON text; templates iterate it or write it with ``tojson``)."""
    if isinstance(arguments, str):
        try:
            value = json.loads(arguments)
        except ValueError:
            return arguments
        return value if isinstance(value, dict) else arguments
    return arguments


def template_messages(
    messages: Sequence[Mapping[str, Any]], *, short_ids: bool = False
) -> list[dict[str, Any]]:
    """Messages as templates read them: calls' arguments as objects, a tool
    result with the name of the function it answers (some templates print
    it); ``short_ids``: ids cut to 9 characters (Mistral's templates refuse
    any other)."""
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for m in messages:
        msg = dict(m)
        calls = msg.get("tool_calls")
        if calls:
            fixed = []
            for call in calls:
                fn = dict(call.get("function") or {})
                fn["arguments"] = arguments_value(fn.get("arguments", {}))
                call_id = str(call.get("id") or "")
                names[call_id] = str(fn.get("name", ""))
                fixed.append(
                    {
                        **call,
                        "id": short_id(call_id) if short_ids else call_id,
                        "type": "function",
                        "function": fn,
                    }
                )
            msg["tool_calls"] = fixed
        elif "tool_calls" in msg:
            del msg["tool_calls"]  # an empty list: templates test for the key
        if msg.get("role") == "tool":
            call_id = str(msg.get("tool_call_id") or "")
            if not msg.get("name") and call_id in names:
                msg["name"] = names[call_id]
            if short_ids:
                msg["tool_call_id"] = short_id(call_id)
        out.append(msg)
    return out


def tool_names(tools: Sequence[Mapping[str, Any]]) -> list[str]:
    return [str(t["function"]["name"]) for t in tools]


def parameters(tool: Mapping[str, Any]) -> dict[str, Any]:
    """A tool's parameters schema (an object with no properties if none)."""
    schema = tool["function"].get("parameters")
    return schema if isinstance(schema, dict) else {"type": "object", "properties": {}}
