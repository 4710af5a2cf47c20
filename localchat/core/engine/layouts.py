"""Which of llama.cpp's weight layouts work on this computer, remembered.

llama.cpp's CPU backend may keep a model's weights in *extra buffer types*:
layouts made for the CPU's matrix instructions (``AMX`` on Intel Xeons since
Sapphire Rapids; ``CPU_REPACK``, weights interleaved for AVX2, AVX-512 and
ARM's dot-product units; ``KleidiAI`` on ARM). They are what makes generation
fast on a CPU, and on some machines one of them crashes the process at the
first decode (llama-cpp-python 0.3.36 built with AMX segfaults on Q4_0, Q8_0
and K-quant models on such Xeons, as llama.cpp's issue 20824 reports).

So the worker decodes a few tokens right after loading a model (llama.cpp's own
tools warm a model up the same way), and first says which layouts hold its
weights (:class:`~localchat.core.engine.protocol.LoadStage`). When that first
decode kills the process, the engine loads the model again with the first of
those layouts turned off, the others kept, and remembers what worked for this
CPU and this llama.cpp build (the worker's :func:`platform key
<localchat.core.engine.cpu_layout.platform_key>`), so later loads go straight
to it. Any other crash is reported as before.

This module is the parent's side: what to turn off next, and the memory (a
JSON file in the data folder). It imports neither llama.cpp nor Qt.
"""

from __future__ import annotations

import logging
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from localchat.core import jsonfile, paths

log = logging.getLogger(__name__)

MEMORY_FILE = "engine-layouts.json"
CRASH_ENV = "LOCALCHAT_CRASH_ON_LAYOUT"
"""Fault injection for tests: the worker's first decode after a load kills the
process (SIGSEGV) when the named extra buffer type holds weights (as the AMX
crash does), or always with "any"; a test can so prove the fallback on any CPU."""


@dataclass(frozen=True)
class Remembered:
    """The layouts turned off for a platform, and why (said to the user)."""

    off: tuple[str, ...]
    reason: str


def next_off(
    off: tuple[str, ...], used: tuple[str, ...], extras: tuple[str, ...], *, decoded: bool
) -> tuple[str, ...] | None:
    """The layouts to turn off after a load crashed with ``off`` turned off;
    None when turning one off cannot help (the crash is not a layout's).

    ``used``: the extra buffer types that held weights (known once the model
    loaded, before its first decode); ``extras``: all this build offers, in
    llama.cpp's order of preference; ``decoded``: the crash came at the first
    decode (after loading), not while loading."""
    if decoded:
        # llama.cpp takes the first layout that accepts a tensor: the first
        # used is the one that holds most, and the prime suspect.
        for name in extras:
            if name in used and name not in off:
                return (*off, name)
        return None
    # Loading crashed: with some layouts off, the rest are placed by our
    # overrides (see cpu_layout); fall back to none of them.
    if off and set(extras) - set(off):
        return tuple(extras)
    return None


_FAULTS = {"SIGSEGV", "SIGILL", "SIGBUS", "SIGABRT", "SIGFPE"}
_WINDOWS_FAULTS = {
    0xC0000005,  # access violation
    0xC000001D,  # illegal instruction
    0xC0000409,  # fail fast (abort)
    0xC0000096,  # privileged instruction
}


def is_crash(exit_code: int | None) -> bool:
    """Whether a worker's exit status is a fault of its own code (a signal
    such as SIGSEGV or SIGILL, an access violation on Windows), which a
    layout can cause; a kill (the out-of-memory killer's SIGKILL) is not."""
    if exit_code is None:
        return False
    if exit_code < 0:
        return any(getattr(signal, name, None) == -exit_code for name in _FAULTS)
    return exit_code in _WINDOWS_FAULTS


def describe_exit(code: int | None) -> str:
    """A worker's exit status in words: "SIGSEGV", "exit status 1"."""
    if code is None:
        return "no exit status"
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"


def override_patterns(names: list[str]) -> list[str]:
    """Anchored patterns (std::regex's ECMAScript) matching exactly the
    tensor ``names``, one per kind of weight: llama.cpp tries every pattern on
    every tensor, so a few, not hundreds."""
    layers: dict[str, list[str]] = {}
    for name in names:
        m = re.fullmatch(r"blk\.(\d+)\.(.+)", name)
        if m is None:
            layers.setdefault(name, [])
        else:
            layers.setdefault(m[2], []).append(m[1])
    patterns = []
    for rest, numbers in layers.items():
        if numbers:
            patterns.append(rf"^blk\.({'|'.join(numbers)})\.{re.escape(rest)}$")
        else:
            patterns.append(f"^{re.escape(rest)}$")
    return patterns


def describe(off: tuple[str, ...], reason: str) -> str:
    """The one line the user reads: what is off and why."""
    names = " and ".join(off)
    kind = "layouts" if len(off) > 1 else "layout"
    return f"{names} weight {kind} off: {reason}"


class LayoutMemory:
    """The layouts turned off per platform key, in ``engine-layouts.json``."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or paths.home() / MEMORY_FILE

    def get(self, key: str) -> Remembered | None:
        entry = self._read().get(key)
        if not isinstance(entry, dict):
            return None
        off = entry.get("off")
        if not isinstance(off, list) or not all(isinstance(n, str) for n in off):
            return None
        return Remembered(tuple(off), str(entry.get("reason", "")))

    def put(self, key: str, off: tuple[str, ...], reason: str, **facts: str) -> None:
        """Remember ``off`` for ``key`` (written atomically; a failure to write
        is logged, not raised: the fallback then simply happens again)."""
        data = self._read()
        data[key] = {"off": list(off), "reason": reason, "when": time.strftime("%Y-%m-%d"), **facts}
        try:
            jsonfile.replace(self.path, data)
        except OSError:
            log.exception("could not remember the weight layouts in %s", self.path)

    def _read(self) -> dict[str, object]:
        return jsonfile.read_object(self.path)
