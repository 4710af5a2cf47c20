"""Tools for a template that has none: the functions described in a system
prompt of ours that teaches Hermes' ``<tool_call>`` format (the most widely
trained), earlier calls and their results written as plain text in the
roles every template knows."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from localchat.core.engine.tools.calls import arguments_value

INSTRUCTIONS = (
    "You may call one or more functions to help with the user's request. The functions "
    "are described within <tools></tools> XML tags:\n<tools>\n{tools}\n</tools>\n\n"
    "To call a function, reply with a JSON object with the function's name and its "
    "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>\n'
    "The results come back within <tool_response></tool_response> XML tags."
)


def tools_prompt(tools: Sequence[Mapping[str, Any]]) -> str:
    listed = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
    return INSTRUCTIONS.format(tools=listed)


def call_text(call: Mapping[str, Any]) -> str:
    fn = call.get("function") or {}
    body = {"name": fn.get("name", ""), "arguments": arguments_value(fn.get("arguments", {}))}
    return f"<tool_call>\n{json.dumps(body, ensure_ascii=False)}\n</tool_call>"


def plain_messages(
    messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """``messages`` with only system, user and assistant roles: the tools in
    the system prompt (in front of the conversation's own), an assistant's
    calls after its text, a run of tool results as one user message."""
    out: list[dict[str, Any]] = []
    if tools:
        prompt = tools_prompt(tools)
        if messages and messages[0].get("role") == "system":
            first = dict(messages[0])
            first["content"] = f"{first.get('content', '')}\n\n{prompt}".lstrip()
            out.append(first)
            messages = messages[1:]
        else:
            out.append({"role": "system", "content": prompt})
    for m in messages:
        role = m.get("role")
        if role == "tool":
            text = f"<tool_response>\n{m.get('content', '')}\n</tool_response>"
            if out and out[-1].get("tool_results"):
                out[-1]["content"] += "\n" + text
            else:
                out.append({"role": "user", "content": text, "tool_results": True})
            continue
        msg = {k: v for k, v in m.items() if k not in ("tool_calls", "tool_call_id", "name")}
        calls = m.get("tool_calls") or ()
        if calls:
            texts = [str(m.get("content") or "")] + [call_text(c) for c in calls]
            msg["content"] = "\n".join(t for t in texts if t)
        out.append(msg)
    for msg in out:
        msg.pop("tool_results", None)
    return out
