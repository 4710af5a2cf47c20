"""The worker process's entry point, importable without llama.cpp.

``Engine`` hands this function to multiprocessing; only in the child does it
import the worker (and with it llama_cpp), so the parent process (the window,
the CLI) never loads llama.cpp.
"""

from __future__ import annotations

from multiprocessing.connection import Connection
from typing import Any


def worker_main(conn: Connection, cancel_flag: Any, log_path: str | None) -> None:
    from localchat.core.engine.worker import main

    main(conn, cancel_flag, log_path)
