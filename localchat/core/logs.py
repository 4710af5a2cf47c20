"""The app's log: one file in the data folder, rotated, for bug reports.

Each area logs through a logger of its own, named after its module
(``logging.getLogger(__name__)``: ``localchat.core.engine.client``,
``localchat.ui.bridge``, and ``localchat.qt`` for Qt's own messages). The
``localchat`` command sends them all to ``logs/localchat.log`` in the data
folder (2 MiB, then three older files kept), at ``info`` unless
``--log-level`` or ``LOCALCHAT_LOG_LEVEL`` says otherwise. A problem the user
is shown in one line is logged here with its traceback. The engine's worker
process keeps its own log beside it (``engine.log``: llama.cpp's words).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from localchat.core import paths
from localchat.core.errors import LocalChatError

LEVEL_ENV = "LOCALCHAT_LOG_LEVEL"
LEVELS = ("debug", "info", "warning", "error")
FILE = "localchat.log"
MAX_BYTES = 2 * 2**20
BACKUPS = 3
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_file() -> Path:
    return paths.logs_dir() / FILE


def level_named(name: str | None) -> int:
    """The logging level for ``name`` (else ``LOCALCHAT_LOG_LEVEL``, else info)."""
    chosen = (name or os.environ.get(LEVEL_ENV) or "info").strip().lower()
    if chosen not in LEVELS:
        raise LocalChatError(f"unknown log level {chosen!r}; choose one of {', '.join(LEVELS)}")
    return int(getattr(logging, chosen.upper()))


def setup(level: str | None = None) -> Path:
    """Send the ``localchat`` loggers to the rotated log file; returns its path.
    Calling it again replaces the handler (and level) it set before."""
    from logging.handlers import RotatingFileHandler  # only where a log is kept

    root = logging.getLogger("localchat")
    root.setLevel(level_named(level))
    for old in [h for h in root.handlers if getattr(h, "localchat", False)]:
        root.removeHandler(old)
        old.close()
    path = log_file()
    handler = RotatingFileHandler(
        path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8", delay=True
    )
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.localchat = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.propagate = False  # not also to the terminal: the user reads one-line errors there
    return path
