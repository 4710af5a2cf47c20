"""A reply's tokens in, its text out as pieces the parent can show: whole
characters, stop strings held back and cut, and, for a reasoning model, the
thinking apart from the answer (``reasoning.Splitter``), with the count of
thinking tokens that its budget is measured in."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from localchat.core.engine.protocol import Piece, TokenLogprob
from localchat.core.engine.reasoning import Part, Splitter
from localchat.core.engine.streaming import StopMatcher, Utf8Assembler
from localchat.core.engine.worker.thinking import Thinking
from localchat.core.engine.worker.tokenizer import LlamaTokenizer


class ReplyText:
    def __init__(
        self,
        tokenizer: LlamaTokenizer,
        stops: Sequence[str],
        thinking: Thinking | None,
        say: Callable[[Piece], None],
        *,
        inside: bool = False,
        shown: frozenset[int] = frozenset(),
        entry: Callable[[int], TokenLogprob] | None = None,
    ) -> None:
        """``shown``: control tokens whose text is part of the reply (a tool
        call's markers); ``entry``: the streamed entry of the i-th token, to
        send each answer token's with the piece its text went out in (or the
        next one)."""
        self.tokenizer = tokenizer
        self._entry = entry
        self._pending: list[Piece] = []  # said while adding a token
        self._ends: list[int] = []  # each token's text's end, counted in characters
        self._next_entry = 0  # the first token whose entry has not gone out
        self._utf8 = Utf8Assembler()
        self._stops = StopMatcher(stops)
        self._say = say
        self.splitter = Splitter(thinking.fmt, inside=inside) if thinking else None
        self._markers = (thinking.marker_tokens if thinking else frozenset()) | shown
        self.tokens: list[int] = []
        """Every token of the reply (the engine's own closing of the thinking too)."""
        self.texts: list[str] = []
        """What each token wrote (whole characters: a split one in the token
        that completes it)."""
        self.thinking_flags: list[bool] = []
        self._written = 0  # characters past the stop strings, before the split
        self.answer: list[str] = []
        self.thought: list[str] = []
        self.reasoning_tokens = 0
        self.hit_stop = False
        self._think_start = 0.0
        self._think_end = 0.0

    @property
    def thinking(self) -> bool:
        """Whether the text now being written is thinking."""
        return self.splitter is not None and self.splitter.inside

    @property
    def used_markers(self) -> bool:
        """Whether the reply thought (or was meant to): its text is then not
        what its tokens spell."""
        return self.splitter is not None and (self.splitter.blocks > 0 or self.splitter.inside)

    def add(self, token: int) -> bool:
        """Take the next token; True when it completed a stop string."""
        was = self.thinking
        self.tokens.append(token)
        lstrip = 1 if len(self.tokens) == 1 and self.tokenizer.add_space_prefix else 0
        piece = self.tokenizer.piece(token, special=token in self._markers, lstrip=lstrip)
        text = self._utf8.feed(piece)
        self.texts.append(text)
        self._ends.append((self._ends[-1] if self._ends else 0) + len(text))
        out, self.hit_stop = self._stops.feed(text)
        self._text(out)
        counted = was or self.thinking  # its markers count as thinking
        self.thinking_flags.append(counted)
        if counted:
            self.reasoning_tokens += 1
            if not self._think_start:
                self._think_start = time.perf_counter()
            if was and not self.thinking:
                self._think_end = time.perf_counter()
        self._flush()
        return self.hit_stop

    def finish(self) -> None:
        """The reply ended: what was held back (a partial character, the start
        of a stop string or of a marker) goes out."""
        if not self.hit_stop:
            rest = self._utf8.flush()
            if rest and self.texts:
                self.texts[-1] += rest
            out, self.hit_stop = self._stops.feed(rest)
            self._text(out if self.hit_stop else out + self._stops.flush())
        if self.splitter is not None:
            self._send(self.splitter.flush())
        if self._think_start and not self._think_end:
            self._think_end = time.perf_counter()  # it ended while thinking
        self._flush(ended=True)
        self._trim()

    def _trim(self) -> None:
        """Cut the tokens' texts to what was written: a stop string and what
        followed it are not part of the reply."""
        extra = sum(len(t) for t in self.texts) - self._written
        i = len(self.texts) - 1
        while extra > 0 and i >= 0:
            cut = min(extra, len(self.texts[i]))
            self.texts[i] = self.texts[i][: len(self.texts[i]) - cut]
            extra -= cut
            i -= 1

    def thinking_ms(self) -> float:
        if not self._think_start:
            return 0.0
        return (self._think_end - self._think_start) * 1000

    def _text(self, text: str) -> None:
        if not text:
            return
        self._written += len(text)
        self._send(self.splitter.feed(text) if self.splitter else [Part(text, False)])

    def _send(self, parts: list[Part]) -> None:
        for part in parts:
            (self.thought if part.reasoning else self.answer).append(part.text)
            self._pending.append(Piece(part.text, part.reasoning))

    def _flush(self, *, ended: bool = False) -> None:
        """Say what the last token (or the end) brought out, the answer's
        last piece with the entries of the tokens whose text is out (those
        of the end are the result's)."""
        pending, self._pending = self._pending, []
        last = max((i for i, p in enumerate(pending) if not p.reasoning), default=None)
        if self._entry is not None and last is not None and not ended:
            entries = self._ready()
            if entries:
                pending[last] = Piece(pending[last].text, False, tuple(entries))
        for piece in pending:
            self._say(piece)

    def _ready(self) -> list[TokenLogprob]:
        """The entries of the answer's tokens whose whole text has gone out
        (past the stop strings and the thinking's markers held back)."""
        assert self._entry is not None
        out_to = self._written - (len(self.splitter._buf) if self.splitter else 0)
        entries = []
        while self._next_entry < len(self.thinking_flags):
            i = self._next_entry
            if self._ends[i] > out_to:
                break
            if not self.thinking_flags[i]:
                entries.append(self._entry(i))
            self._next_entry += 1
        return entries
