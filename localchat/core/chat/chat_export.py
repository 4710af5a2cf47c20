"""A chat written out for the user: as JSON (every message of the shown
branch, with its model, settings and stats) or as Markdown.

A reasoning model's thinking is kept apart from its answer in both. In JSON,
each message has ``"reasoning"`` (the thinking; "" when none) beside
``"content"`` (the answer), and a reply whose tokens were recorded has
``"tokens"``: each as the CLI's ``--top-logprobs`` lists it (``{"id", "text",
"logprob", "top": [{"id", "text", "logprob"}, ...]}``, ``"reasoning": true``
and ``"forced": true`` only where true); joined, their texts are the thinking
and the answer as the model wrote them. In Markdown, a reply's thinking comes before its
answer as a collapsed block::

    <details><summary>Thinking</summary>

    ...the thinking, as Markdown...

    </details>

    ...the answer...

GitHub and most Markdown viewers show it folded under "Thinking"; a viewer
without HTML still shows the tags, so it cannot be taken for the answer. A
``</details>`` inside the thinking is escaped so that it cannot end the block
early.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from localchat.core.chat.store import ChatStore, StoredMessage
    from localchat.core.engine.protocol import TokenLogprob


def as_json(store: ChatStore, chat_id: int) -> dict[str, Any]:
    info = store.chat(chat_id)
    return {
        "title": info.title,
        "created_at": info.created_at,
        "messages": [message_json(m) for m in store.thread(chat_id)],
    }


def message_json(m: StoredMessage) -> dict[str, Any]:
    data: dict[str, Any] = {
        "role": m.role,
        "content": m.content,
        "reasoning": m.reasoning,
        "model": m.model,
        "settings": m.settings,
        "stats": m.stats,
        "status": m.status,
        "created_at": m.created_at,
    }
    if m.tokens:
        data["tokens"] = [token_json(t) for t in m.tokens]
    if m.sources is not None:
        data["sources"] = list(m.sources)
    return data


def token_json(t: TokenLogprob) -> dict[str, Any]:
    """A token as the JSON export and the CLI's ``--top-logprobs`` list it
    (OpenAI's shape; ``reasoning`` and ``forced`` only where true)."""
    data: dict[str, Any] = {
        "id": t.id,
        "text": t.text,
        "logprob": round(t.logprob, 6),
        "top": [{"id": i, "text": text, "logprob": round(lp, 6)} for i, text, lp in t.top],
    }
    if t.reasoning:
        data["reasoning"] = True
    if t.forced:
        data["forced"] = True
    return data


def as_markdown(store: ChatStore, chat_id: int) -> str:
    info = store.chat(chat_id)
    parts = [f"# {info.title or 'Chat'}\n"]
    names = {"system": "System", "user": "You", "assistant": "Assistant"}
    for m in store.thread(chat_id):
        heading = names[m.role]
        if m.role == "assistant" and m.model:
            heading += f" ({m.model})"
        thinking = thinking_block(m.reasoning) if m.reasoning else ""
        parts.append(f"## {heading}\n\n{thinking}{m.content}\n{sources_list(m.sources)}")
    return "\n".join(parts)


def sources_list(sources: tuple[dict[str, Any], ...] | None) -> str:
    """A reply's sources under it: each file and where in it; "" when the
    reply was not grounded in documents."""
    if sources is None:
        return ""
    if not sources:
        return "\n*Not found in your documents.*\n"
    lines = ["", "Sources:", ""]
    for i, s in enumerate(sources, 1):
        where = f", {s['location']}" if s.get("location") else ""
        lines.append(f"{i}. `{s['path']}`{where}")
    return "\n".join(lines) + "\n"


def thinking_block(reasoning: str) -> str:
    """The thinking as a collapsed ``<details>`` block, followed by a blank line."""
    body = re.sub(r"</(details)", r"&lt;/\1", reasoning.strip("\n"), flags=re.IGNORECASE)
    return f"<details><summary>Thinking</summary>\n\n{body}\n\n</details>\n\n"
