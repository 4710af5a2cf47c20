"""The installed models: every ``.gguf`` file in the models folder."""

from __future__ import annotations

from pathlib import Path

from localchat.core import paths
from localchat.core.errors import ModelFileError


def installed() -> list[Path]:
    """Installed model files, newest first. Partial downloads are never listed."""
    found = [p for p in paths.models_dir().glob("*.gguf") if p.is_file()]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def resolve(model: str | None) -> Path:
    """The model file meant by ``model``: a path to a .gguf file, or the name
    of an installed model (its file name, with or without ``.gguf``, or an
    unambiguous part of it). ``None`` means the only installed model."""
    models = installed()
    if model is None:
        if len(models) == 1:
            return models[0]
        if not models:
            raise ModelFileError(
                f"no model installed: pass -m PATH/TO/MODEL.gguf, or copy a .gguf file into "
                f"{paths.models_dir()}"
            )
        raise ModelFileError(f"several models are installed; choose one with -m: {_names(models)}")
    candidate = Path(model).expanduser()
    if candidate.exists() or len(candidate.parts) > 1:
        return candidate
    key = model.lower().removesuffix(".gguf")
    exact = [p for p in models if p.stem.lower() == key]
    if exact:
        return exact[0]
    partial = [p for p in models if key in p.stem.lower()]
    if len(partial) == 1:
        return partial[0]
    if partial:
        raise ModelFileError(f"{model!r} matches several models: {_names(partial)}")
    if candidate.suffix.lower() == ".gguf":
        return candidate  # a file name that is not here: "no such file" says it best
    if not models:
        raise ModelFileError(f"no model named {model!r}, and no models are installed")
    raise ModelFileError(f"no model named {model!r}; installed: {_names(models)}")


def _names(models: list[Path]) -> str:
    return ", ".join(p.stem for p in models)
