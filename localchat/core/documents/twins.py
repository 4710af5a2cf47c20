"""Digital twins: someone to chat with, made from one author's texts.

A twin is a collection of the author's texts (chats with it are grounded in
them, ``grounding.py``), a persona (the system prompt: speak as the author,
from the passages, and say when the texts do not cover something; the user
may rewrite it), the chat model it speaks with, and optionally a LoRA
adapter fine-tuned on the same texts for the author's style. Each twin is a
small JSON file in the data folder's ``twins/``, written atomically."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from localchat.core import jsonfile, paths
from localchat.core.errors import LocalChatError

PERSONA = (
    "You are {name}. Speak as {name}, in the first person, in the voice and with the "
    "views of the writings you are given: with each question come passages from "
    "{name}'s own texts, numbered. Ground what you say in them, and cite the ones you "
    "use by their number, like [1]. When they do not cover something, say that your "
    "writings do not speak of it rather than inventing an answer; never claim to have "
    "written what is not in them."
)
"""The persona a twin starts with."""


@dataclass(frozen=True)
class Twin:
    name: str
    collection: str
    """The document collection of the author's texts."""
    persona: str
    model: str | None = None
    """The installed chat model it speaks with (None: the one chosen at the time)."""
    adapter: str | None = None
    """The LoRA adapter fine-tuned on its texts (a path), if any."""
    source: str = ""
    """The folder its texts came from."""


def twins_dir() -> Path:
    folder = paths.home() / "twins"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def slug(name: str) -> str:
    """A file name for ``name`` (any script kept; separators and the like
    replaced)."""
    cleaned = re.sub(r"[^\w.-]+", "-", name.strip(), flags=re.UNICODE).strip("-.")
    if not cleaned:
        raise LocalChatError(f"{name!r} cannot name a twin: use some letters")
    return cleaned.lower()


def collection_name(name: str) -> str:
    return f"twin: {name}"


def _file(name: str) -> Path:
    return twins_dir() / f"{slug(name)}.json"


def save(twin: Twin) -> Twin:
    jsonfile.replace(_file(twin.name), asdict(twin))
    return twin


def load(name: str) -> Twin:
    path = _file(name)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Twin(**data)
    except FileNotFoundError:
        names = ", ".join(t.name for t in all_twins()) or "none"
        raise LocalChatError(f"no twin named {name!r} (twins: {names})") from None
    except (ValueError, TypeError) as exc:
        raise LocalChatError(f"{path} is not a twin's file: {exc}") from None


def all_twins() -> list[Twin]:
    out = []
    for path in sorted(twins_dir().glob("*.json")):
        try:
            out.append(Twin(**json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError, TypeError):
            continue  # a broken file: not a twin
    return out


def exists(name: str) -> bool:
    return _file(name).exists()


def remove(name: str) -> Twin:
    twin = load(name)
    _file(name).unlink()
    return twin


def persona_for(name: str) -> str:
    return PERSONA.format(name=name)
