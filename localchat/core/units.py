"""How sizes, counts and durations are written for people: one place, so the
window, the command line and the model manager say the same thing the same way."""

from __future__ import annotations


def human_size(n: float) -> str:
    """Bytes in decimal units, the way file managers and the Hub write them: 4.4 GB."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError  # pragma: no cover


def human_count(n: int) -> str:
    """A parameter count the way model cards write it: 7.2B, 110M, 42K."""
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.1f}{suffix}"
    return str(n)


def plural(n: int, one: str, many: str | None = None) -> str:
    """``1 file``, ``2,048 files``."""
    return f"{n:,} {one if n == 1 else many or one + 's'}"


def clock(seconds: float, *, hours: bool = False) -> str:
    """A stopwatch: ``m:ss``, or ``h:mm:ss`` from an hour (always with
    ``hours``, for a column of ETAs that must not change width)."""
    s = max(int(seconds), 0)
    if s >= 3600 or hours:
        return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


def duration(seconds: float) -> str:
    """A time left in words: ``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    s = max(int(seconds), 0)
    if s >= 3600:
        return f"{s // 3600} h {s // 60 % 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"
