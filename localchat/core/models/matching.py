"""Which installed adapters fit which models: the model picker's survey (each
model's label, the adapters under it, those no model fits), and the model a
chat's remembered adapter goes with. No Qt; the survey reads files (run it off
the GUI thread)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localchat.core.engine.gguf_info import ModelInfo
from localchat.core.models import adapters, library
from localchat.core.models.adapters import AdapterInfo
from localchat.core.units import human_count, human_size


def model_label(path: Path, info: ModelInfo | str) -> str:
    """A model's row in the picker: name, parameters, quantization, size (or why unusable)."""
    if isinstance(info, str):
        return f"{path.stem}  ·  unusable: {info}"
    return (
        f"{path.stem}  ·  {human_count(info.parameter_count)}  ·  "
        f"{info.quantization}  ·  {human_size(info.file_size)}"
    )


@dataclass(frozen=True)
class Survey:
    """What the picker lists: labels, and where each installed adapter goes."""

    labels: list[tuple[str, str]] = field(default_factory=list)
    """(model path, label) for each model surveyed."""
    fits: dict[str, list[AdapterInfo]] = field(default_factory=dict)
    """Model path -> the installed adapters that fit it."""
    orphans: list[AdapterInfo] = field(default_factory=list)
    """Installed adapters that fit none of the models."""


def survey(models: list[Path]) -> Survey:
    """Each model's label, the installed adapters that fit it (an adapter made
    here fits only the file it was trained on, by sha256, hashed once and
    remembered), and the adapters no listed model fits."""
    labels: list[tuple[str, str]] = []
    infos: dict[str, ModelInfo] = {}
    for path in models:
        info = library.describe(path)
        labels.append((str(path), model_label(path, info)))
        if not isinstance(info, str):
            infos[str(path)] = info
    found = adapters.installed()
    fits: dict[str, list[AdapterInfo]] = {}
    for key, info in infos.items():
        mine: list[AdapterInfo] = []
        for adapter in found:
            try:
                if adapter.fits(info):
                    mine.append(adapter)
            except OSError:  # the model went away meanwhile
                break
        if mine:
            fits[key] = mine
    placed = {a.path for mine in fits.values() for a in mine}
    return Survey(labels, fits, [a for a in found if a.path not in placed])


def chat_adapter(chosen: dict[str, Any], bases: dict[str, str]) -> tuple[Path | None, Path, str]:
    """A chat's remembered adapter (``chosen``: its settings) and the model it
    goes with: the one recorded with the choice, else the listed one it fits
    (``bases``, from the survey); or (None, the model, why not) when the model
    or the adapter is gone."""
    adapter = Path(chosen["adapter"])
    recorded = chosen.get("adapter_base") or ""
    for candidate in (recorded, bases.get(str(adapter), "")):
        if candidate and Path(candidate).exists():
            base = Path(candidate)
            break
    else:
        needs = Path(recorded).name if recorded else "its base model"
        return (
            None,
            Path(),
            (
                f"{adapter.stem} is not used: it needs {needs}, which is not installed "
                "(an adapter works only with the model it was trained on)"
            ),
        )
    if not adapter.exists():
        gone = f"The adapter {adapter.stem} is gone ({adapter}): chatting without it"
        return None, base, gone
    return adapter, base, ""


def model_named(name: str, models: list[Path]) -> Path | None:
    """The model among ``models`` that a chat records as ``name`` (a reply
    records the model's file name without ``.gguf``, and `` + adapter`` when
    one was on), or None when none of them is it."""
    stem = name.split(" + ", 1)[0].strip()
    return next((path for path in models if path.stem == stem), None) if stem else None
