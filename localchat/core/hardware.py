"""Facts about this computer that settings depend on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def physical_cores() -> int:
    """Physical CPU cores available to this process (llama.cpp runs best with one
    thread per physical core; hyper-threads only add contention)."""
    logical = _usable_cpus()
    if sys.platform.startswith("linux"):
        cores = set()
        for cpu in logical:
            sib = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
            try:
                cores.add(sib.read_text().strip())
            except OSError:
                cores.add(str(cpu))
        return max(1, len(cores))
    if sys.platform == "darwin":
        for key in ("hw.perflevel0.physicalcpu", "hw.physicalcpu"):
            try:
                out = subprocess.run(
                    ["sysctl", "-n", key], capture_output=True, text=True, timeout=2, check=True
                )
                return max(1, int(out.stdout.strip()))
            except (OSError, ValueError, subprocess.SubprocessError):
                continue
    n = len(logical)
    return max(1, n // 2 if n >= 4 else n)


def _usable_cpus() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))
