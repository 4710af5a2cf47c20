"""The worker process: the only place that imports llama_cpp (with
``cpu_layout.py``). This module is its entry: :func:`main` is what the child
process runs (``entry.py`` imports it there, never in the parent).

It serves one request at a time from the parent (see ``protocol.py``). A crash
in here (a bad file, out of memory, a driver) ends this process only; the
parent notices at once and reports it.

Its modules, a job each:

- ``server``: the request loop, each request to its handler;
- ``flags``: the shared-memory flags (cancel, a request waiting) and
  llama.cpp's abort callback on them;
- ``llama_log``: llama.cpp's log, captured;
- ``devices``: what the model can run on, and the fall back to the CPU;
- ``loader``: loading a model (weight layouts, LoRA, the warm-up decode);
- ``tokenizer``: llama.cpp's vocabulary as the prompt cache uses it;
- ``prompt_cache``: the prompt's tokens, reused from the last turn;
- ``window``: what the model sees of a conversation (the overflow policy);
- ``generation``: a chat reply, generated and streamed;
- ``ahead``: the next prompt's start, evaluated between turns;
- ``scoring``: logits and perplexity.
"""

from __future__ import annotations

import os
import signal
import sys
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from localchat.core.engine.worker.server import Worker

__all__ = ["main"]

LOG_LIMIT = 5 * 2**20


def main(conn: Connection, cancel_flag: Any, log_path: str | None) -> None:
    """Entry point of the worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the parent's to handle
    # On abort ggml would attach gdb to print a backtrace: slow, and noise.
    os.environ["GGML_NO_BACKTRACE"] = "1"
    if log_path:
        _redirect_output(log_path)
    Worker(conn, cancel_flag).serve()


def _redirect_output(log_path: str) -> None:
    """llama.cpp and ggml write aborts straight to stderr: keep them (and any
    stray stdout) in the log, where the parent can quote the last line if this
    process dies. The terminal stays the parent's."""
    try:
        path = Path(log_path)
        if path.exists() and path.stat().st_size > LOG_LIMIT:
            path.unlink()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    except OSError:
        pass
