"""Small JSON files in the data folder that the app remembers things in
(``hashes.json``, ``engine-layouts.json``): read tolerantly, replaced whole."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def read_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; empty when there is none, or the file is
    unreadable or holds something else (logged: it is then written anew)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        log.warning("ignoring an unreadable %s", path, exc_info=True)
        return {}
    return data if isinstance(data, dict) else {}


def replace(path: Path, data: dict[str, Any], *, indent: int = 1) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed over it, so
    a reader never sees half a file; raises OSError, leaving no temporary file."""
    import tempfile  # only when writing: not in the window's start-up

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=indent)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
