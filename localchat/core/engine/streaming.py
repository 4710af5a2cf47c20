"""Turning token bytes into text that is safe to show as it streams.

Pure functions of their input, so the worker's streaming is tested without a
model: :class:`Utf8Assembler` never emits half a character, and
:class:`StopMatcher` never emits text that may turn out to be the start of a
stop string.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence


class Utf8Assembler:
    """Bytes in, whole characters out.

    A token may end in the middle of a multi-byte character (byte-fallback
    tokens split an emoji into four); those bytes wait for the rest. Invalid
    sequences become U+FFFD exactly as a one-shot decode of all the bytes would
    make them."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> str:
        return self._decoder.decode(data)

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)


class StopMatcher:
    """Finds stop strings in streamed text.

    :meth:`feed` returns the text that is safe to emit and whether a stop
    string was reached; text that could still become a stop string is held
    back until it either completes one (and is dropped) or cannot."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self._held = ""

    def feed(self, text: str) -> tuple[str, bool]:
        if not self.stops:
            return text, False
        buf = self._held + text
        hits = [i for i in (buf.find(s) for s in self.stops) if i >= 0]
        if hits:
            self._held = ""
            return buf[: min(hits)], True
        keep = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(buf)), keep, -1):
                if buf.endswith(s[:k]):
                    keep = k
                    break
        self._held = buf[len(buf) - keep :]
        return buf[: len(buf) - keep], False

    def flush(self) -> str:
        out, self._held = self._held, ""
        return out
