"""A collection's embedding model, through the engine: passages and
questions as vectors, with the prefixes each family was trained with
(nomic-embed-text: ``search_document: `` / ``search_query: ``; E5:
``passage: `` / ``query: ``; BGE-M3 and most others: none)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from localchat.core.engine.gguf_info import read_model_info

if TYPE_CHECKING:
    from localchat.core.engine.client import Engine

BATCH = 32
"""Passages embedded per engine request: a chat's request waits at most one."""

VECTOR_RELEVANT = 0.5
"""A passage this similar (cosine) to the question counts as relevant even
when it shares few of its words (a paraphrase); E5's vectors all sit close
together, so its own bar is higher."""


def prefixes(path: Path) -> tuple[str, str]:
    """(query prefix, document prefix) for the model at ``path``."""
    info = read_model_info(path)
    name = f"{info.name} {info.metadata.get('general.basename', '')} {path.name}".lower()
    if info.architecture.startswith("nomic-bert") or "nomic-embed" in name:
        return "search_query: ", "search_document: "
    if "e5" in name.replace("-", " ").split() or "-e5-" in name or name.startswith("e5"):
        return "query: ", "passage: "
    return "", ""


def relevant_similarity(path: Path) -> float:
    name = path.name.lower()
    return 0.8 if "e5" in name else VECTOR_RELEVANT


class Embedding:
    """The embedding model ``path``, loaded in ``engine`` beside its chat model."""

    def __init__(self, engine: Engine, path: Path) -> None:
        self.engine = engine
        self.path = Path(path)
        self.query_prefix, self.document_prefix = prefixes(self.path)
        self.relevant = relevant_similarity(self.path)
        self.info = engine.load_embedder(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    def documents(self, texts: Sequence[str]) -> Any:
        """The passages' vectors, a float32 array of rows of length 1."""
        rows = [
            self.engine.embed([self.document_prefix + t for t in texts[i : i + BATCH]])
            for i in range(0, len(texts), BATCH)
        ]
        if not rows:
            return np.zeros((0, self.info.dim), np.float32)
        return np.vstack(rows)

    def query(self, text: str) -> Any:
        return self.engine.embed([self.query_prefix + text])[0]


def installed_embedder(name: str) -> Path:
    """The installed model file a collection names as its embedding model."""
    from localchat.core.errors import LocalChatError
    from localchat.core.models import library

    found = [p for p in library.installed() if p.name == name]
    if not found:
        raise LocalChatError(
            f"the embedding model {name} is not installed (see 'localchat models')"
        )
    return found[0]
