"""Calls read from a reply as it streams: the text before a call goes out
at once (but for what may be the start of a call's marker, held back until
it is clear), a call goes out whole as soon as it is complete, and a region
that turns out not to be a call is text after all."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from localchat.core.engine.tools.calls import ToolCall
from localchat.core.engine.tools.formats import ToolFormat

Event = str | ToolCall
"""Text of the answer, or a complete call."""


class ToolStream:
    def __init__(self, fmt: ToolFormat, tools: Sequence[Mapping[str, Any]]) -> None:
        self.fmt = fmt
        self.tools = tools
        self.calls: list[ToolCall] = []
        self._buffer = ""
        self._region = False
        self._said = False  # any text of the answer gone out (not whitespace)

    def feed(self, text: str) -> list[Event]:
        self._buffer += text
        return self._drain(final=False)

    def finish(self) -> list[Event]:
        """The reply ended: what was held back goes out."""
        events = self._drain(final=True)
        if self._buffer:
            events.append(self._buffer)
            self._buffer = ""
        return events

    def _drain(self, final: bool) -> list[Event]:
        events: list[Event] = []
        while self._buffer:
            if not self._region:
                at_start = not self._said and not self.calls
                i = self.fmt.start(self._buffer, at_start)
                if i is None:
                    if self.calls and not self._buffer.strip():
                        # Space between or after calls: not an answer.
                        if final:
                            self._buffer = ""
                        return events
                    keep = 0 if final else self.fmt.held(self._buffer, at_start)
                    self._say(events, self._buffer[: len(self._buffer) - keep])
                    self._buffer = self._buffer[len(self._buffer) - keep :]
                    return events
                self._say(events, self._buffer[:i])
                self._buffer = self._buffer[i:]
                self._region = True
            taken = self.fmt.take(self._buffer, final, self.tools)
            if taken is None:  # not a call: its first character is text
                self._region = False
                self._say(events, self._buffer[0])
                self._buffer = self._buffer[1:]
                continue
            calls, used = taken
            if not calls and not used:
                return events  # more text needed
            self.calls.extend(calls)
            events.extend(calls)
            self._buffer = self._buffer[used:]
            self._region = False
        return events

    def _say(self, events: list[Event], text: str) -> None:
        if text:
            events.append(text)
            self._said = self._said or bool(text.strip())
