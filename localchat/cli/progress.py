"""A progress line on stderr for long commands (downloads, training)."""

from __future__ import annotations

from typing import IO


class ProgressLine:
    """Rewritten in place on a terminal; a line every tenth of the way
    otherwise, so logs stay readable."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.tty = out.isatty()
        self.tenth = -1
        self.shown = False

    def update(self, line: str, share: float) -> None:
        if self.tty:
            self.out.write("\r" + line + " " * 4)
            self.shown = True
        elif int(share * 10) > self.tenth:
            self.tenth = int(share * 10)
            self.out.write(line + "\n")
        self.out.flush()

    def close(self) -> None:
        if self.shown:
            self.out.write("\n")
            self.out.flush()
