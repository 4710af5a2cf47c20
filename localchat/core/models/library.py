"""The installed models: every ``.gguf`` file in the models folder.

Adding a model (an import now, a download later) writes a ``.part`` file and
renames it into place only once it is whole and checked, so a ``.gguf`` in the
folder is always a usable file; partial files are never listed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from localchat.core import paths
from localchat.core.engine.gguf_info import ModelInfo, read_model_info
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


def import_model(source: str | os.PathLike[str], *, link: bool = False) -> Path:
    """Copy (or hard-link, where the file system allows) a GGUF file into the
    models folder, after checking it is a whole model file. Returns its path."""
    info = read_model_info(source)
    if info.file_kind != "model":
        raise ModelFileError(f"{info.path.name} is a {info.file_kind}, not a model")
    target = paths.models_dir() / info.path.name
    if target.suffix.lower() != ".gguf":
        target = target.with_suffix(target.suffix + ".gguf")
    if target.exists():
        raise ModelFileError(f"a model named {target.stem} is already installed")
    part = target.with_name(target.name + ".part")
    try:
        if link:
            try:
                os.link(info.path, part)
            except OSError:
                shutil.copyfile(info.path, part)
        else:
            shutil.copyfile(info.path, part)
        read_model_info(part)  # the copy is whole too
        os.replace(part, target)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise ModelFileError(f"cannot copy {info.path.name}: {exc.strerror or exc}") from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return target


def remove_model(model: str) -> Path:
    """Delete an installed model (chats made with it stay). Returns its path."""
    path = resolve(model)
    if path.parent.resolve() != paths.models_dir().resolve():
        raise ModelFileError(
            f"{path} is not in the models folder; only installed models are removed"
        )
    if not path.exists():
        raise ModelFileError(f"no model named {model!r} is installed")
    path.unlink()
    return path


def describe(path: Path) -> ModelInfo | str:
    """The model's facts, or why the file is unusable."""
    try:
        return read_model_info(path)
    except ModelFileError as exc:
        return str(exc)
