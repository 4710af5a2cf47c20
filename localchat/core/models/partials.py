"""Unfinished downloads on disk: the ``.part`` files and their sidecars.

Each file of a model being downloaded goes to ``NAME.part`` in the models
folder, next to ``NAME.part.json`` (where it comes from, its size and sha256).
This module says whether the bytes of a ``.part`` belong to the file asked for
(so a download may continue them), finds what an earlier run left unfinished,
and deletes it. A ``.part`` is never listed as a model.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

from localchat.core import paths
from localchat.core.models.hub import HubError, RemoteFile, RemoteModel, check_path, group

IDENTITY = ("repo_id", "path", "size", "sha256")
"""What makes a ``.part`` the same file (the revision may move on, the file not)."""


def part_path(folder: Path, part: RemoteFile) -> Path:
    """Where the bytes of ``part`` gather until it is whole: ``NAME.part``."""
    return folder / (PurePosixPath(part.path).name + ".part")


def sidecar(partial: Path) -> Path:
    """The ``NAME.part.json`` beside a ``.part``."""
    return partial.with_name(partial.name + ".json")


def remove(partial: Path) -> None:
    """Delete a ``.part`` and its sidecar (either may be missing)."""
    partial.unlink(missing_ok=True)
    sidecar(partial).unlink(missing_ok=True)


def resumable(partial: Path, model: RemoteModel, part: RemoteFile) -> int:
    """Bytes of ``part`` already on disk from an earlier try of the same file
    (0, and the leftovers removed, when it was another version or is broken);
    the sidecar then describes ``part``."""
    meta = {
        "repo_id": model.repo_id,
        "path": part.path,
        "size": part.size,
        "sha256": part.sha256,
        "blob_id": part.blob_id,
        "revision": model.revision,
    }
    try:
        saved = json.loads(sidecar(partial).read_text(encoding="utf-8"))
        size = partial.stat().st_size if partial.exists() else 0
        same = all(saved[k] == meta[k] for k in IDENTITY)
    except (OSError, ValueError, KeyError, TypeError):
        same, size = False, 0
    if not same or size > part.size:
        partial.unlink(missing_ok=True)
        sidecar(partial).write_text(json.dumps(meta), encoding="utf-8")
        return 0
    return size


def interrupted(folder: Path | None = None) -> list[tuple[RemoteModel, int]]:
    """Downloads an earlier run left unfinished in the models folder (from
    their ``.part.json`` sidecars), with the bytes already there: what a
    window can offer to resume, without asking the Hub."""
    folder = folder or paths.models_dir()
    by_repo: dict[tuple[str, str], list[RemoteFile]] = {}
    have: dict[str, int] = {}
    for meta_file in sorted(folder.glob("*.part.json")):
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
            repo_id, path = str(meta["repo_id"]), str(meta["path"])
            part = RemoteFile(path, int(meta["size"]), meta["sha256"], meta.get("blob_id"))
            revision = str(meta.get("revision") or "main")
            check_path(repo_id, path)
        except (OSError, ValueError, KeyError, TypeError, HubError):
            continue  # not ours, or broken: a pull of that file starts it again
        if PurePosixPath(path).name + ".part.json" != meta_file.name:
            continue
        by_repo.setdefault((repo_id, revision), []).append(part)
        partial = meta_file.with_name(meta_file.name.removesuffix(".json"))
        have[path] = partial.stat().st_size if partial.exists() else 0
    found: list[tuple[RemoteModel, int]] = []
    for (repo_id, revision), parts in by_repo.items():
        for model in group(repo_id, revision, parts):
            found.append((model, sum(min(have[p.path], p.size) for p in model.parts)))
    return found


def discard(model: RemoteModel, folder: Path | None = None) -> None:
    """Delete what an unfinished download of ``model`` left (``.part`` files
    and their sidecars); installed files are not touched."""
    folder = folder or paths.models_dir()
    for part in model.parts:
        remove(part_path(folder, part))
