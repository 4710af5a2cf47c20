"""A chat written out for the user: as JSON (every message of the shown
branch, with its model, settings and stats) or as Markdown."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from localchat.core.chat.store import ChatStore


def as_json(store: ChatStore, chat_id: int) -> dict[str, Any]:
    info = store.chat(chat_id)
    return {
        "title": info.title,
        "created_at": info.created_at,
        "messages": [
            {
                "role": m.role,
                "content": m.content,
                "model": m.model,
                "settings": m.settings,
                "stats": m.stats,
                "status": m.status,
                "created_at": m.created_at,
            }
            for m in store.thread(chat_id)
        ],
    }


def as_markdown(store: ChatStore, chat_id: int) -> str:
    info = store.chat(chat_id)
    parts = [f"# {info.title or 'Chat'}\n"]
    names = {"system": "System", "user": "You", "assistant": "Assistant"}
    for m in store.thread(chat_id):
        heading = names[m.role]
        if m.role == "assistant" and m.model:
            heading += f" ({m.model})"
        parts.append(f"## {heading}\n\n{m.content}\n")
    return "\n".join(parts)
