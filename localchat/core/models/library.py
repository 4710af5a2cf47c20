"""The installed models: every ``.gguf`` file in the models folder (and, run
from a source checkout, in the repository's ``models/`` folder).

Adding a model (an import now, a download later) writes a ``.part`` file and
renames it into place only once it is whole and checked, so a ``.gguf`` in the
folder is always a usable file; partial files are never listed.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from localchat.core import paths
from localchat.core.engine.gguf_info import ModelInfo, read_model_info
from localchat.core.errors import ModelFileError

SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)


def installed() -> list[Path]:
    """Installed model files, newest first. Partial downloads are never
    listed; a split model is listed once, by its first part, when every part
    is there (llama.cpp loads the rest from the first)."""
    folders = [paths.models_dir()]
    checkout = paths.checkout_models_dir()
    if checkout is not None and checkout.resolve() != folders[0].resolve():
        folders.append(checkout)
    found = [p for folder in folders for p in folder.glob("*.gguf") if p.is_file() and _complete(p)]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def in_checkout(path: Path) -> bool:
    """Whether ``path`` is one of the source checkout's own models (``models/``)."""
    checkout = paths.checkout_models_dir()
    return checkout is not None and path.parent.resolve() == checkout.resolve()


def demo() -> Path | None:
    """The tiny demo model that ships with the app, if this install has it: what
    a fresh install chats with before any model is downloaded."""
    path = paths.demo_model()
    return path if path.name and path.is_file() else None


def is_demo(path: Path | str) -> bool:
    bundled = demo()
    return bundled is not None and Path(path) == bundled


def parts_of(path: Path) -> list[Path]:
    """The files a model consists of: itself, or every part of a split model."""
    m = SPLIT.search(path.name)
    if m is None:
        return [path]
    stem, total = path.name[: m.start()], int(m[2])
    return [path.with_name(f"{stem}-{i:05d}-of-{total:05d}.gguf") for i in range(1, total + 1)]


def _complete(path: Path) -> bool:
    m = SPLIT.search(path.name)
    if m is None:
        return True
    return int(m[1]) == 1 and all(p.is_file() for p in parts_of(path))


def hf_cache_models() -> list[Path]:
    """GGUF models already in the Hugging Face cache (downloaded by other
    tools), by their snapshot paths; loadable in place or importable."""
    try:
        from huggingface_hub import scan_cache_dir

        cache = scan_cache_dir()
    except Exception:  # no cache, or one we cannot read: nothing to offer
        return []
    found: list[Path] = []
    for repo in cache.repos:
        if repo.repo_type != "model":
            continue
        for revision in repo.revisions:
            for f in revision.files:
                path = Path(f.file_path)
                if path.name.lower().endswith(".gguf") and _complete(path):
                    found.append(path)
    return sorted(set(found))


def resolve(model: str | None) -> Path:
    """The model file meant by ``model``: a path to a .gguf file, or the name
    of an installed model (its file name, with or without ``.gguf``, or an
    unambiguous part of it). ``None`` means the only installed model."""
    models = installed()
    if model is None:
        if len(models) == 1:
            return models[0]
        bundled = demo()
        if not models and bundled is not None:
            return bundled  # a fresh install: the demo model
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
    if not any(key in p.stem.lower() for p in models):
        models = models + hf_cache_models()  # models other tools downloaded
        bundled = demo()
        if bundled is not None:
            models.append(bundled)
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
    for part in reversed(parts_of(path)):  # the first part, which lists it, last
        part.unlink(missing_ok=True)
    return path


def describe(path: Path) -> ModelInfo | str:
    """The model's facts, or why the file is unusable."""
    try:
        return read_model_info(path)
    except ModelFileError as exc:
        return str(exc)
