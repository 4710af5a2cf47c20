"""Checkpoints of both trainers: written atomically, read back with their format checked.

A checkpoint is a dict saved with ``torch.save``: ``format`` (:data:`FORMAT`),
``kind`` (``scratch`` or ``lora``), the version of LocalChat that wrote it,
and what the trainer needs to go on (:mod:`.train`, :mod:`.finetune`). It is
written to ``PATH.tmp`` and renamed, so a kill never leaves half a
checkpoint; it is read with ``weights_only`` (tensors and plain values only).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import torch

from localchat import __version__
from localchat.core.trainer.settings import TrainError

FORMAT = 1
Kind = Literal["scratch", "lora"]


def save(state: dict[str, Any], path: Path, kind: Kind) -> None:
    """Write ``state`` (with the format, the kind and the version) atomically."""
    full = {"format": FORMAT, "kind": kind, "localchat": __version__, **state}
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(full, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise TrainError(f"cannot write the checkpoint {path}: {exc.strerror or exc}") from None


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Anything that goes wrong reading the checkpoint ``path`` inside this
    block is a one-line TrainError."""
    try:
        yield
    except TrainError:
        raise
    except FileNotFoundError:
        raise TrainError(f"no checkpoint at {path}") from None
    except Exception as exc:
        raise TrainError(f"{path} is not a LocalChat checkpoint ({type(exc).__name__})") from None


def load(path: Path, kind: Kind) -> dict[str, Any]:
    """The checkpoint's state, once it is known to be one of ``kind`` in this
    format (a from-scratch checkpoint written before ``kind`` existed counts)."""
    with reading(path):
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("format") != FORMAT or state.get("kind", "scratch") != kind:
            if kind == "lora":
                raise TrainError(f"{path.name} is not a LoRA checkpoint of this version")
            raise TrainError(f"{path} is a checkpoint of another format")
    return state
