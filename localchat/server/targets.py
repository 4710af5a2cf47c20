"""What a request's ``model`` names: an installed model, or an installed
model with one of its LoRA adapters, ``model+adapter`` (the ids
``/v1/models`` lists). Only installed files: a request never names a path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from localchat.core.engine.gguf_info import read_model_info
from localchat.core.errors import LocalChatError, ModelFileError
from localchat.core.models import adapters, library
from localchat.server.errors import ApiError


@dataclass(frozen=True)
class Target:
    model: Path
    adapter: Path | None = None

    @property
    def name(self) -> str:
        return f"{self.model.stem}+{self.adapter.stem}" if self.adapter else self.model.stem


def pairs() -> list[Target]:
    """The installed models, each followed by the adapters made for it (its
    file, by the adapter's own record; an adapter from another tool, which
    records none, goes with the models of its architecture)."""
    found = adapters.installed()
    out: list[Target] = []
    for model in library.installed():
        out.append(Target(model))
        arch = None
        for adapter in found:
            if adapter.base_file:
                if adapter.base_file != model.name:
                    continue
            else:
                if arch is None:
                    try:
                        arch = read_model_info(model).architecture
                    except ModelFileError:
                        arch = ""
                if adapter.architecture != arch:
                    continue
            out.append(Target(model, adapter.path))
    return out


def find(name: str) -> Target:
    """The model (and adapter) ``name`` names (Ollama's ``:latest`` ignored):
    404 when it is not installed."""
    key = name.removesuffix(":latest")
    model_name, _, adapter_name = key.partition("+")
    model = _installed_model(model_name)
    if model is None:
        models = library.installed()
        raise ApiError(
            404,
            f"model {name!r} not found; installed: {', '.join(p.stem for p in models) or 'none'}",
            param="model",
            code="model_not_found",
        )
    if not adapter_name:
        return Target(model)
    try:
        fitting = [a.path for a in adapters.installed() if a.path.stem == adapter_name]
    except LocalChatError:
        fitting = []
    if not fitting:
        raise ApiError(
            404,
            f"adapter {adapter_name!r} not found (see /v1/models for model+adapter ids)",
            param="model",
            code="model_not_found",
        )
    return Target(model, fitting[0])


def _installed_model(key: str) -> Path | None:
    if not key or "/" in key or "\\" in key:
        return None
    try:
        path = library.resolve(key)
    except ModelFileError:
        return None
    return path if path in library.installed() else None
