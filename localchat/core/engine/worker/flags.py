"""The shared-memory flags, as the worker reads them and as llama.cpp does.

The parent sets :attr:`Flag.CANCEL` to stop the request in flight and
:attr:`Flag.REQUEST_WAITING` before sending a request (see ``protocol.py``).
llama.cpp's abort callback is libc's ``strlen`` on a flag's byte: 0 (keep
going) until the byte is set, with no Python and no GIL in llama.cpp's compute
loop. It stops prompt evaluation and a token's decode mid-graph; the loops
here also check the flags between decodes.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
from collections.abc import Iterator
from typing import Any

import llama_cpp

from localchat.core.engine.protocol import Flag


def _strlen() -> Any:
    if sys.platform == "win32":
        return ctypes.cdll.msvcrt.strlen
    return ctypes.CDLL(ctypes.util.find_library("c") or None).strlen


class Flags:
    """The flag bytes the parent shares (a ``multiprocessing`` raw array)."""

    def __init__(self, memory: Any) -> None:
        self.memory = memory
        self._abort_cb = llama_cpp.ggml_abort_callback(
            ctypes.cast(_strlen(), ctypes.c_void_p).value or 0
        )
        base = ctypes.addressof(memory)
        self._cancel_addr = ctypes.c_void_p(base + Flag.CANCEL)
        self._waiting_addr = ctypes.c_void_p(base + Flag.REQUEST_WAITING)

    @property
    def cancelled(self) -> bool:
        """The parent asked to stop the request in flight."""
        return bool(self.memory[Flag.CANCEL])

    @property
    def request_waiting(self) -> bool:
        """The parent is sending a request (or has sent one not yet received)."""
        return bool(self.memory[Flag.REQUEST_WAITING])

    def received(self) -> None:
        """The request the parent flagged is in hand."""
        self.memory[Flag.REQUEST_WAITING] = 0

    def abort_on_cancel(self, llm: llama_cpp.Llama) -> None:
        """llama.cpp stops a decode of ``llm`` when the parent cancels."""
        llama_cpp.llama_set_abort_callback(llm._ctx.ctx, self._abort_cb, self._cancel_addr)

    @contextlib.contextmanager
    def abort_on_request(self, llm: llama_cpp.Llama) -> Iterator[None]:
        """Meanwhile llama.cpp stops a decode of ``llm`` when a request is
        waiting instead (evaluating ahead gives way to it); then on a cancel
        again."""
        ctx = llm._ctx.ctx
        llama_cpp.llama_set_abort_callback(ctx, self._abort_cb, self._waiting_addr)
        try:
            yield
        finally:
            llama_cpp.llama_set_abort_callback(ctx, self._abort_cb, self._cancel_addr)
