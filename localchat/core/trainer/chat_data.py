"""Conversations as fine-tuning data: chat JSONL, the user's own chats, and
their tokens with the part the model learns marked.

- **Chat JSONL**: one conversation per line, ``{"messages": [{"role":
  "user", "content": "..."}, {"role": "assistant", ...}]}`` (the format of
  OpenAI's fine-tuning API and of most published chat datasets). Roles are
  ``system``, ``user`` and ``assistant``; each conversation needs at least one
  assistant message. A file with malformed lines is refused, naming them.
- **My chats**: conversations from the chat store (the branch shown in the
  window), finished assistant replies only, as the same JSONL; a chat that
  gives nothing (no messages, no replies, only failed, stopped or empty
  ones) is named with the reason, in one line.
- **Masks**: a conversation is rendered with the base model's own chat
  template, the text the model sees when it chats, and only the assistant
  turns (with the template's end-of-turn token, so the model learns to stop)
  are learned; the prompts are context. The turns are found by rendering the
  conversation up to each assistant message with and without it, and the
  tokens by tokenizing the text up to each turn's start and end.

Needs no PyTorch: the window uses it to export and check data.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localchat.core.chat.store import ChatStore
from localchat.core.engine.protocol import Message
from localchat.core.engine.template import ChatTemplate
from localchat.core.trainer.data import DataError

ROLES = ("system", "user", "assistant")
Conversation = tuple[Message, ...]
Encode = Callable[[str, bool], list[int]]
"""``encode(text, add_bos)``: token ids of template text (special tokens parsed)."""


@dataclass
class Example:
    """One training sequence: its tokens and which of them are learned
    (``learn[i]``: the model is taught to predict token ``i``)."""

    tokens: list[int]
    learn: list[bool]

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def learned(self) -> int:
        return sum(self.learn[1:])


def _problem(value: Any) -> str | None:
    if not isinstance(value, dict):
        return "not a JSON object"
    messages = value.get("messages")
    if not isinstance(messages, list) or not messages:
        return 'no "messages" list'
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            return "a message without a system/user/assistant role"
        if not isinstance(m.get("content"), str):
            return "a message whose content is not text"
    if not any(m["role"] == "assistant" for m in messages):
        return "no assistant message to learn from"
    return None


def read_jsonl(path: str | os.PathLike[str]) -> list[Conversation]:
    """The conversations of a chat JSONL file; a file with malformed lines is
    a :class:`DataError` naming the first few (line numbers from 1)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"no such file: {path}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path.name} is not UTF-8 text") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    found: list[Conversation] = []
    bad: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            bad.append((number, "not JSON"))
            continue
        problem = _problem(value)
        if problem:
            bad.append((number, problem))
            continue
        found.append(
            tuple(Message(role=m["role"], content=m["content"]) for m in value["messages"])
        )
    if bad:
        shown = "; ".join(f"line {n}: {why}" for n, why in bad[:5])
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise DataError(f"{path.name} has {len(bad)} malformed line(s): {shown}{more}")
    if not found:
        raise DataError(f"{path.name} has no conversations")
    return found


def write_jsonl(conversations: Iterable[Sequence[Message]], path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    lines = [
        json.dumps({"messages": [dict(m) for m in c]}, ensure_ascii=False) for c in conversations
    ]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


UNFINISHED = ("failed", "cancelled", "interrupted", "streaming")
"""The statuses of a reply that did not finish: never learned."""

WHY: dict[str, tuple[str, str]] = {
    "no-messages": ("it has no messages", "they have no messages"),
    "no-replies": ("it has no replies", "they have no replies"),
    "unfinished": (
        "its replies failed or were stopped (only finished replies are learned)",
        "their replies failed or were stopped (only finished replies are learned)",
    ),
    "empty": ("its replies are empty", "their replies are empty"),
    "empty-or-unfinished": (
        "its replies are empty, failed or were stopped (only finished replies are learned)",
        "their replies are empty, failed or were stopped (only finished replies are learned)",
    ),
}
"""Why a chat gave nothing to learn, by key: (one chat, several chats)."""


@dataclass(frozen=True)
class Skipped:
    """A chat that gave no training conversation, and why (a key of :data:`WHY`)."""

    chat_id: int
    title: str
    reason: str


@dataclass
class StoreChats:
    """The chats read from the store: the conversations they give, and the
    chats that gave nothing (:attr:`note` says which and why, in one line)."""

    conversations: list[Conversation]
    skipped: list[Skipped]

    @property
    def distinct(self) -> int:
        """How many different conversations (a copy counts once)."""
        return len({json.dumps(c, sort_keys=True) for c in self.conversations})

    @property
    def note(self) -> str:
        return skipped_line(self.skipped)


def _why_empty(messages: Sequence[Any]) -> str:
    """Why a chat's shown branch (``StoredMessage`` list) gives nothing to learn."""
    if not messages:
        return "no-messages"
    replies = [m for m in messages if m.role == "assistant"]
    if not replies:
        return "no-replies"
    unfinished = any(m.status in UNFINISHED for m in replies)
    empty = any(m.status not in UNFINISHED and not m.content.strip() for m in replies)
    if unfinished and empty:
        return "empty-or-unfinished"
    return "unfinished" if unfinished else "empty"


def read_store(store: ChatStore, chat_ids: Sequence[int] | None = None) -> StoreChats:
    """The chats (all when ``chat_ids`` is None) as conversations: the branch
    each chat shows, its finished messages only; a chat with no finished
    assistant reply gives none, and is listed in :attr:`StoreChats.skipped`
    with the reason."""
    titles = {c.id: c.title for c in store.list_chats()}
    ids = list(titles) if chat_ids is None else list(chat_ids)
    found: list[Conversation] = []
    skipped: list[Skipped] = []
    for chat_id in ids:
        thread = store.thread(chat_id)
        messages = [
            Message(role=m.role, content=m.content)
            for m in thread
            if m.status == "done" and m.content.strip()
        ]
        if any(m["role"] == "assistant" for m in messages):
            found.append(tuple(messages))
        else:
            skipped.append(Skipped(chat_id, titles.get(chat_id, ""), _why_empty(thread)))
    return StoreChats(found, skipped)


def from_store(store: ChatStore, chat_ids: Sequence[int] | None = None) -> list[Conversation]:
    """:func:`read_store`'s conversations."""
    return read_store(store, chat_ids).conversations


def _name(title: str) -> str:
    title = " ".join(title.split()) or "New chat"
    return f"'{title[:40].rstrip()}…'" if len(title) > 41 else f"'{title}'"


def skipped_line(skipped: Sequence[Skipped], most: int = 3) -> str:
    """Which chats gave nothing to learn and why, in one line ('' for none):
    "chat 'Trip to Rome' gave nothing to learn: its replies failed or were
    stopped (only finished replies are learned)"; several reasons are joined
    with "; ", and past ``most`` names a reason says how many more."""
    parts: list[str] = []
    for reason in WHY:
        chats = [s for s in skipped if s.reason == reason]
        if not chats:
            continue
        names = [_name(s.title) for s in chats[:most]]
        if len(chats) > most:
            names.append(f"{len(chats) - most} more")
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        one, many = WHY[reason]
        chat = "chat" if len(chats) == 1 else "chats"
        parts.append(f"{chat} {listed} gave nothing to learn: {one if len(chats) == 1 else many}")
    return "; ".join(parts)


def template_for(keys: dict[str, Any]) -> ChatTemplate:
    """The model's chat template with its BOS/EOS texts, as the engine builds it."""
    tokens = keys.get("tokenizer.ggml.tokens", [])

    def text(key: str) -> str:
        index = keys.get(key)
        return str(tokens[index]) if isinstance(index, int) and 0 <= index < len(tokens) else ""

    return ChatTemplate(
        keys.get("tokenizer.chat_template"),
        bos_token=text("tokenizer.ggml.bos_token_id"),
        eos_token=text("tokenizer.ggml.eos_token_id"),
    )


def render_text(conversation: Sequence[Message], template: ChatTemplate) -> str:
    return template.render(list(conversation), add_generation_prompt=False)


def example(conversation: Sequence[Message], template: ChatTemplate, encode: Encode) -> Example:
    """The conversation's tokens, its assistant turns marked to learn.

    The whole conversation is tokenized at once, as the model sees it when it
    chats (tokenizing turn by turn would differ at the seams: SentencePiece
    prefixes a space to each piece); each assistant turn's first and last
    token are found by tokenizing the text up to them."""
    messages = list(conversation)
    text = template.render(messages, add_generation_prompt=False)
    bos = template.bos_token
    add_bos = not (bos and text.startswith(bos))
    tokens = encode(text, add_bos)
    learn = [False] * len(tokens)

    def boundary(prefix: str) -> int:
        ids = encode(prefix, add_bos) if prefix else []
        n = 0
        for a, b in zip(ids, tokens, strict=False):
            if a != b:
                break
            n += 1
        return n

    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = template.render(messages[:i], add_generation_prompt=True)
        # the text up to the end of this reply: where the conversation rendered up
        # to it stops agreeing with the whole (some templates close a conversation
        # with an EOS that is not there when it goes on)
        upto = template.render(messages[: i + 1], add_generation_prompt=False)
        same = next((k for k, (a, b) in enumerate(zip(upto, text, strict=False)) if a != b), None)
        reply_end = same if same is not None else min(len(upto), len(text))
        if not text.startswith(prompt) or reply_end <= len(prompt):
            raise DataError(
                "the model's chat template does not render a conversation turn by turn, so "
                "its replies cannot be told apart from its prompts"
            )
        start, end = boundary(prompt), boundary(text[:reply_end])
        learn[start:end] = [True] * (end - start)
    return Example(tokens, learn)
