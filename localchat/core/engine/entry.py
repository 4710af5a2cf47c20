"""The worker process's entry point, importable without llama.cpp.

``Engine`` hands this function to multiprocessing; only in the child does it
import the worker (and with it llama_cpp), so the parent process (the window,
the CLI) never loads llama.cpp.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # kept out of the window's start-up: Engine imports this module
    from multiprocessing.connection import Connection

WORKER_NICENESS = 5
"""How far the worker lowers its scheduling priority. With nothing else
wanting the CPU the model runs at full speed; when the window (or anything
else the user is doing) wants a core the model's threads are holding, it gets
it first, so the window stays smooth while a fast model writes (the GUI
thread's p99 lateness in ``benchmarks/ui.py`` fell from ~13 ms to ~9 ms)."""


def _yield_to_the_desktop() -> None:
    try:
        if sys.platform == "win32":
            import ctypes

            below_normal = 0x4000  # BELOW_NORMAL_PRIORITY_CLASS
            kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
            kernel32.SetPriorityClass(kernel32.GetCurrentProcess(), below_normal)
        else:
            os.nice(WORKER_NICENESS)
    except (OSError, AttributeError):
        pass  # not allowed here: run at the normal priority


def worker_main(conn: Connection, cancel_flag: Any, log_path: str | None) -> None:
    # First, before imports start threads (numpy's BLAS pool): a thread keeps
    # the priority it was started with.
    _yield_to_the_desktop()
    from localchat.core.engine.worker import main

    main(conn, cancel_flag, log_path)
