"""How commands print a result: JSON for programs (``--json``), lines for
people. Every command with ``--json`` goes through :func:`emit` (or, for a
stream of results, :func:`json_line`), so the JSON is written one way."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any


def emit(
    data: Any,
    *,
    as_json: bool,
    lines: Callable[[], Iterable[str]],
    out: IO[str] | None = None,
) -> int:
    """Print ``data`` as one JSON document (``as_json``), else the lines
    ``lines()`` makes of it; returns the exit status, 0."""
    out = out or sys.stdout
    if as_json:
        json_line(data, out)
    else:
        for line in lines():
            print(line, file=out)
    return 0


def json_line(data: Any, out: IO[str]) -> None:
    """One JSON document on a line of its own, sent at once (non-ASCII as it is)."""
    out.write(json.dumps(data, ensure_ascii=False) + "\n")
    out.flush()


def labelled(rows: Iterable[tuple[str, str]], width: int) -> Iterator[str]:
    """``label   value`` lines, the values in a column ``width`` characters in."""
    for label, value in rows:
        yield f"{label:<{width}}{value}"


DIM = "\x1b[2m"
"""ANSI: dim (faint) text from here on."""
RESET = "\x1b[0m"
"""ANSI: back to plain text."""


def color(out: IO[str]) -> bool:
    """Whether to colour what goes to ``out``: a terminal, and ``NO_COLOR``
    (https://no-color.org) not set to anything."""
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return out.isatty()
    except (AttributeError, ValueError):  # no such method, or closed
        return False
