"""The sha256 of a model file, computed once.

A LoRA adapter records the sha256 of the base model it was trained on, and an
adapter is only ever applied to that exact file. Hashing a 4 GB model takes a
few seconds, so the result is remembered in ``hashes.json`` under the user
data folder, keyed by the file's resolved path and checked against its size
and modification time (a changed file is hashed again). A file in the Hugging
Face cache needs no hashing at all: its blob is named by its LFS sha256.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from pathlib import Path

from localchat.core import jsonfile, paths

CHUNK = 8 << 20
_HEX64 = re.compile(r"[0-9a-f]{64}")
_lock = threading.Lock()


def _cache_file() -> Path:
    return paths.home() / "hashes.json"


def _read_cache() -> dict[str, dict[str, object]]:
    return jsonfile.read_object(_cache_file())


def _write_cache(data: dict[str, dict[str, object]]) -> None:
    with contextlib.suppress(OSError):  # a cache that cannot be written is only slower
        jsonfile.replace(_cache_file(), data, indent=0)


def sha256(path: str | os.PathLike[str]) -> str:
    """The file's sha256 as 64 hex digits (from the cache when the file is unchanged)."""
    source = Path(path).expanduser()
    resolved = source.resolve()
    if resolved.parent.name == "blobs" and _HEX64.fullmatch(resolved.name):
        return resolved.name  # the Hugging Face cache names LFS blobs by their sha256
    stat = resolved.stat()
    key = str(resolved)
    with _lock:
        known = _read_cache().get(key)
    if known and known.get("size") == stat.st_size and known.get("mtime_ns") == stat.st_mtime_ns:
        return str(known["sha256"])
    import hashlib  # here: the window's start-up imports this module, not hashing

    digest = hashlib.sha256()
    with open(resolved, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    value = digest.hexdigest()
    with _lock:
        data = _read_cache()
        data = {k: v for k, v in data.items() if Path(k).exists()}  # forget deleted files
        data[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": value}
        _write_cache(data)
    return value
