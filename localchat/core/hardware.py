"""Facts about this computer that settings depend on."""

from __future__ import annotations

import os
import shutil
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


def memory() -> tuple[int, int] | None:
    """Total and available RAM in bytes, or None where it cannot be read."""
    try:
        if sys.platform.startswith("linux"):
            fields = {}
            for line in Path("/proc/meminfo").read_text().splitlines():
                key, _, value = line.partition(":")
                fields[key] = int(value.split()[0]) * 1024
            return fields["MemTotal"], fields.get("MemAvailable", fields["MemFree"])
        if sys.platform == "win32":
            return _windows_memory()
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        return total, available
    except (OSError, ValueError, KeyError, IndexError, AttributeError):
        return None


def gpu_memory() -> tuple[int, int] | None:
    """Total and free memory of this computer's largest NVIDIA GPU, in bytes
    (from ``nvidia-smi``), or None where there is none or it cannot be asked.
    Apple's GPUs share the RAM, which :func:`memory` already counts."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=memory.total,memory.free", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
        gpus = [tuple(int(v) * 2**20 for v in line.split(",")) for line in out.splitlines() if line]
        return max((g[0], g[1]) for g in gpus if len(g) == 2) if gpus else None
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def _windows_memory() -> tuple[int, int] | None:
    import ctypes

    class MemoryStatus(ctypes.Structure):
        _fields_ = [  # the ctypes way
            ("dwLength", ctypes.c_ulong),
            ("dwMemoryLoad", ctypes.c_ulong),
            ("ullTotalPhys", ctypes.c_ulonglong),
            ("ullAvailPhys", ctypes.c_ulonglong),
            ("ullTotalPageFile", ctypes.c_ulonglong),
            ("ullAvailPageFile", ctypes.c_ulonglong),
            ("ullTotalVirtual", ctypes.c_ulonglong),
            ("ullAvailVirtual", ctypes.c_ulonglong),
            ("ullAvailExtendedVirtual", ctypes.c_ulonglong),
        ]

    status = MemoryStatus()
    status.dwLength = ctypes.sizeof(MemoryStatus)
    if not ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):  # type: ignore[attr-defined]
        return None
    return int(status.ullTotalPhys), int(status.ullAvailPhys)
