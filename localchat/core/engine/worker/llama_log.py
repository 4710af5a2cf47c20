"""llama.cpp's log, captured: its complaints (to quote in errors and keep in
the engine log), the sizes in a load report, and which CPU build ggml picked."""

from __future__ import annotations

import collections
import contextlib
import ctypes
import re
import sys
from collections.abc import Iterator
from typing import Any

import llama_cpp

from localchat.core.engine import cpu_layout

_BUFFER_LINES = {
    # "llama_kv_cache:        CPU KV buffer size =    44.00 MiB"
    "kv": re.compile(r"KV buffer size =\s*([\d.]+) MiB"),
    # "sched_reserve:        CPU compute buffer size =   153.01 MiB"
    "compute": re.compile(r"compute buffer size =\s*([\d.]+) MiB"),
}
# "load_tensors:   CPU_REPACK model buffer size =     0.63 MiB": where weights are
_WEIGHT_BUFFER = re.compile(r"(\S+) model buffer size =\s*([\d.]+) MiB")


_INSTALLED: list[object] = []
"""Every log callback ever handed to llama.cpp (see ``LlamaLog.__init__``)."""


class LlamaLog:
    """llama.cpp's log callback, set for this process when made."""

    def __init__(self) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=20)
        """The last warnings and errors, for :meth:`last_error`."""
        self.buffers: dict[str, int] = {}
        """llama.cpp's allocations ("kv", "compute"), from its load report."""
        self.weight_buffers: dict[str, int] = {}
        """Bytes of weights per buffer type, from its load report."""
        self.cpu_variant = ""
        """Which CPU build ggml picked, where it ships several."""
        self._partial = ""
        self._level = 2
        self._capturing = False
        self._quiet = False
        self._callback = llama_cpp.llama_log_callback(self._on_log)
        # llama.cpp keeps the pointer for the life of the process: the thunk
        # must outlive this object (a freed one, called, fails with "cannot
        # build parameter"; a worker in the tests' own process is freed).
        _INSTALLED.append(self._callback)
        llama_cpp.llama_log_set(self._callback, ctypes.c_void_p(0))

    @contextlib.contextmanager
    def load_report(self) -> Iterator[None]:
        """Meanwhile (a model loading), read the sizes llama.cpp reports; its
        complaints from before are forgotten, so an error quotes this load's."""
        self.lines.clear()
        self.buffers.clear()
        self.weight_buffers.clear()
        self._capturing = True
        try:
            yield
        finally:
            self._capturing = False

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        """Meanwhile llama.cpp's complaints are not logged (a preempted decode)."""
        self._quiet = True
        try:
            yield
        finally:
            self._quiet = False

    def last_error(self) -> str:
        """The most telling recent llama.cpp complaint, without its function prefix."""
        lines = list(self.lines)
        for line in reversed(lines):
            if "error loading model: " in line:
                # "llama_model_load: error loading model: error loading model
                # architecture: unknown model architecture: 'x'" -> the last part
                return line.split("error loading model: ")[-1]
        for line in reversed(lines):
            if "error" in line.lower() or "failed" in line.lower():
                return line.split(": ", 1)[-1] if line.startswith("llama") else line
        return ""

    def _on_log(self, level: int, text: bytes, _user: Any) -> None:
        # ggml_log_level: 1 debug, 2 info, 3 warn, 4 error, 5 continues the last line.
        if level == 5:
            level = self._level
        self._level = level
        msg = self._partial + text.decode("utf-8", errors="replace")
        if not msg.endswith("\n"):
            self._partial = msg
            return
        self._partial = ""
        variant = cpu_layout.VARIANT_LINE.search(msg) if level == 2 else None
        if variant:
            self.cpu_variant = variant[1]
        if level == 2 and self._capturing:
            for key, pattern in _BUFFER_LINES.items():
                m = pattern.search(msg)
                if m:
                    self.buffers[key] = self.buffers.get(key, 0) + int(float(m[1]) * 2**20)
            m = _WEIGHT_BUFFER.search(msg)
            if m:
                size = int(float(m[2]) * 2**20)
                self.weight_buffers[m[1]] = self.weight_buffers.get(m[1], 0) + size
        if level >= 3 and msg.strip() and not self._quiet:
            self.lines.append(msg.strip())
            print(msg, end="", file=sys.stderr)
