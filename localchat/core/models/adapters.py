"""LoRA adapters: what one is for, and which ones fit a model.

An adapter made by ``localchat train lora`` names its base model by file name
and sha256 (``localchat.lora.base.*`` keys), and says what it was trained on,
how, and how much it helped. Adapters made elsewhere (llama.cpp's
``convert_lora_to_gguf.py``) carry only the architecture and alpha; they are
listed for any model of that architecture, and llama.cpp checks the shapes.

Adapters live in the ``adapters`` folder of the user data folder (the
window's fine-tunes are written there); any path works from the CLI.
Reading one needs no PyTorch.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localchat.core import paths
from localchat.core.engine.gguf_info import ModelInfo, read_model_info
from localchat.core.errors import LocalChatError
from localchat.core.models import fingerprint

META = "localchat.lora."


@dataclass(frozen=True)
class AdapterInfo:
    path: Path
    name: str
    architecture: str
    alpha: float
    rank: int
    targets: tuple[str, ...]
    base_name: str
    base_file: str
    base_sha256: str
    """Empty for adapters made by other tools."""
    data: str
    steps: int
    loss_before: float | None
    loss_after: float | None
    settings: dict[str, Any]

    def fits(self, model: ModelInfo) -> bool:
        """Whether this adapter is for ``model`` (same file, by sha256, when it says)."""
        if self.architecture != model.architecture:
            return False
        return not self.base_sha256 or fingerprint.sha256(model.path) == self.base_sha256


def adapters_dir() -> Path:
    folder = paths.home() / "adapters"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def read(path: str | os.PathLike[str]) -> AdapterInfo:
    """The adapter's facts; a file that is not a LoRA adapter is an error."""
    info = read_model_info(path)
    meta = info.metadata
    if info.file_kind != "adapter" or meta.get("adapter.type") != "lora":
        raise LocalChatError(f"{info.path.name} is not a LoRA adapter")
    ranks = {t.shape[-1] for t in info.tensors if t.name.endswith(".lora_a")}
    try:
        settings = json.loads(str(meta.get(META + "train") or "{}"))
    except ValueError:
        settings = {}
    before, after = meta.get(META + "heldout_loss_before"), meta.get(META + "heldout_loss_after")
    targets = str(meta.get(META + "targets") or "")
    return AdapterInfo(
        path=info.path,
        name=info.name,
        architecture=info.architecture,
        alpha=float(meta.get("adapter.lora.alpha") or 0.0),
        rank=int(meta.get(META + "rank") or (min(ranks) if ranks else 0)),
        targets=tuple(t for t in targets.split(",") if t),
        base_name=str(meta.get("general.base_model.0.name") or ""),
        base_file=str(meta.get(META + "base.file") or ""),
        base_sha256=str(meta.get(META + "base.sha256") or ""),
        data=str(meta.get(META + "data") or ""),
        steps=int(meta.get(META + "steps") or 0),
        loss_before=float(before) if before is not None else None,
        loss_after=float(after) if after is not None else None,
        settings=settings if isinstance(settings, dict) else {},
    )


def installed() -> list[AdapterInfo]:
    """The adapters in the adapters folder, newest first (unreadable files skipped)."""
    found: list[AdapterInfo] = []
    files = sorted(adapters_dir().glob("*.gguf"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in files:
        try:
            found.append(read(path))
        except LocalChatError:
            continue
    return found


def for_model(model: str | os.PathLike[str]) -> list[AdapterInfo]:
    """The installed adapters that fit this model file."""
    info = read_model_info(model)
    return [a for a in installed() if a.fits(info)]
