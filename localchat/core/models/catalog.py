"""The curated catalog: good 7B-13B instruct models in GGUF, from
``localchat/assets/catalog.json``.

An entry names a Hub repository, the recommended quantization, the license,
the parameter count, the trained context and the authors' recommended
generation settings (validated against the settings' declaration on load). The
files themselves (names, sizes, sha256) are never written here: they come from
the Hub when the entry is opened (:func:`localchat.core.models.hub.files`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from localchat.core.errors import LocalChatError
from localchat.core.params import GenerationSettings
from localchat.core.settings import AppSettings


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    repo_id: str
    quant: str
    license: str
    parameters: int
    context: int
    settings: dict[str, Any]
    """Overrides of the default generation settings the authors recommend."""
    notes: str = ""

    def generation(self, base: GenerationSettings | None = None) -> GenerationSettings:
        return (base or GenerationSettings()).replace(**self.settings)


def entries() -> list[CatalogEntry]:
    text = resources.files("localchat.assets").joinpath("catalog.json").read_text("utf-8")
    try:
        raw = json.loads(text)["models"]
        found = [CatalogEntry(**item) for item in raw]
        for entry in found:
            entry.generation()  # the recommended settings are valid ones
    except (KeyError, TypeError, ValueError) as exc:
        raise LocalChatError(f"the model catalog is broken: {exc}") from None
    return found


def for_repo(repo_id: str) -> CatalogEntry | None:
    """The catalog's entry for a Hub repository, if it has one."""
    key = repo_id.lower()
    return next((e for e in entries() if e.repo_id.lower() == key), None)


def adopt(path: Path, repo_id: str, settings: AppSettings) -> dict[str, Any]:
    """A model from ``repo_id`` was just installed at ``path``: remember the
    catalog's recommended settings as that model's own, unless the user
    already chose some for it. Returns what was remembered."""
    entry = for_repo(repo_id)
    if entry is None or not entry.settings or settings.model_overrides(str(path)):
        return {}
    settings.set_generation(str(path), **entry.settings)
    return dict(entry.settings)
