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

    def estimated_size(self, quant: str | None = None) -> int:
        """About how big its file is at ``quant`` (the recommended one by
        default), before the Hub says: parameters times bits per weight."""
        bits = BITS_PER_WEIGHT.get((quant or self.quant).upper(), 16.0)
        return int(self.parameters * bits / 8)


BITS_PER_WEIGHT = {
    q: gib * 2**30 * 8 / 8.03e9
    for q, gib in {
        "Q2_K": 2.96,
        "Q3_K_S": 3.41,
        "Q3_K_M": 3.74,
        "Q3_K_L": 4.03,
        "Q4_0": 4.34,
        "Q4_K_S": 4.37,
        "Q4_K_M": 4.58,
        "Q5_0": 5.21,
        "Q5_K_S": 5.21,
        "Q5_K_M": 5.33,
        "Q6_K": 6.14,
        "Q8_0": 7.96,
        "F16": 14.96,
        "BF16": 14.96,
    }.items()
}
"""Bits per weight, from the file sizes llama.cpp's quantize tool lists for
Llama 3 8B (8.03e9 parameters; the sizes in GiB)."""


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
    catalog's recommended settings as that model's own (under any choice the
    user made for it, which stands). Returns those that apply now."""
    entry = for_repo(repo_id)
    if entry is None or not entry.settings:
        return {}
    settings.recommend(str(path), **entry.settings)
    chosen = settings.model_overrides(str(path))
    return {k: v for k, v in entry.settings.items() if k not in chosen}
