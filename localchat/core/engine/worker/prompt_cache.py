"""The prompt's tokens, reused from the last turn where that is exact.

llama-cpp-python keeps the tokens whose keys and values are in the KV cache; a
new prompt evaluates only what follows the longest common prefix.
Re-tokenizing a whole conversation each turn can split the previous reply
into different tokens than the ones the model generated, which would break
that match in the middle of the reply. So the cache remembers the last
prompt's tokens and the reply's tokens, and when the new prompt's text starts
with that prompt and reply, it reuses those very tokens and tokenizes only the
remainder (when the remainder starts with a control token, where tokenizing
separately is exact). When older messages dropped out of the prompt, it finds
the run of remembered tokens they were, for the KV cache to drop in place.

It needs a tokenizer (:class:`Tokenizer`) and no model: llama.cpp's in the
worker, any object with those methods in a test.
"""

from __future__ import annotations

import array
import itertools
import re
from collections.abc import Sequence
from typing import Protocol

SEGMENT_CHARS_KEPT = 4_000_000
"""Prompt segments whose tokens are remembered, in characters (~20 MB with
their tokens): then they are forgotten and start again."""


class Tokenizer(Protocol):
    """What the prompt cache needs of a model's tokenizer."""

    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        """``text``'s tokens (``special``: control tokens' texts are parsed)."""
        ...

    def piece(self, token: int, *, special: bool = False) -> bytes:
        """The bytes of ``token`` (``special``: a control token's text too)."""
        ...

    def is_control(self, token: int) -> bool:
        """Whether ``token`` is a control token (a template's markers: tokenizers
        split text at those first)."""
        ...

    def n_vocab(self) -> int: ...

    def adds_bos(self) -> bool:
        """Whether a prompt starts with a BOS token the tokenizer adds."""
        ...


def reusable_prefix(cached: Sequence[int], tokens: Sequence[int]) -> int:
    """How many of ``tokens`` the KV cache already holds: the common prefix,
    less one when it is the whole prompt (a token is evaluated for fresh logits)."""
    return min(common_tokens(cached, tokens), len(tokens) - 1)


def common_tokens(cached: Sequence[int], tokens: Sequence[int]) -> int:
    """Length of the common prefix of two token lists."""
    prefix = 0
    for a, b in zip(cached, tokens, strict=False):
        if a != b:
            break
        prefix += 1
    return prefix


def common_prefix(a: str, b: str) -> int:
    """Length of the common prefix of two strings (slice compares, not a loop
    over characters: prompts run to tens of thousands of them)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


class PromptCache:
    """The last turn's text and tokens (those the KV cache holds), and the
    tokens of the prompt segments seen, for one model's tokenizer."""

    def __init__(self, tokenizer: Tokenizer, *, bos_text: str = "") -> None:
        self.tokenizer = tokenizer
        self.bos_text = bos_text
        """The BOS token's text: a prompt the template starts with it gets no
        second BOS."""
        # The last turn, for prefix reuse: its text (prompt and reply) and
        # tokens, and how much of each is the prompt.
        self.last_text = ""
        self.last_tokens: list[int] = []
        self.last_prompt_chars = self.last_prompt_len = 0
        self.ahead_at = self.ahead_end = 0
        """Of the remembered tokens, those ``[ahead_at, ahead_end)`` were
        evaluated ahead, between turns, and are not yet counted in a turn's
        evaluated tokens."""
        self._marks: list[tuple[int, int]] | None = None
        # Control tokens' texts (a pattern matching any), and the tokens of text
        # segments that each start with one: a prompt's tail is tokenized a
        # segment at a time, and a long chat's old messages only once.
        self._controls: re.Pattern[str] | None = None
        self._segments: dict[str, array.array[int]] = {}
        self._segment_chars = 0

    # -- the last turn -------------------------------------------------------------

    def remember(
        self, text: str, tokens: list[int], reply_text: str, reply_tokens: list[int]
    ) -> None:
        """Keep this turn for the next prompt's reuse."""
        self.last_prompt_chars, self.last_prompt_len = len(text), len(tokens)
        self.last_text, self.last_tokens = text + reply_text, tokens + reply_tokens
        self._marks = None

    def forget(self) -> None:
        """No last turn to reuse (the KV cache was emptied), and nothing
        evaluated ahead."""
        self.remember("", [], "", [])
        self.ahead_at = self.ahead_end = 0

    def take_ahead(self, prefix: int, shift: tuple[int, int] | None, shifted: int) -> int:
        """How many of the first ``prefix`` tokens, those a turn reuses, were
        evaluated ahead (the count is the same whether the user took a minute
        or sent at once); counted once. ``shifted`` tokens of the run
        ``shift`` were dropped from the cache: those past it moved down."""
        at, end = self.ahead_at, self.ahead_end
        if shifted:
            i = shift[0] if shift else 0
            at, end = (p if p < i else max(i, p - shifted) for p in (at, end))
        self.ahead_at = self.ahead_end = 0
        return max(0, min(prefix, end) - at)

    # -- tokens of a prompt ----------------------------------------------------------

    def tokenize_prompt(self, text: str) -> list[int]:
        """``text`` tokenized afresh, with a BOS where the model wants one and
        the text has none."""
        add_bos = self.tokenizer.adds_bos() and not (
            self.bos_text and text.startswith(self.bos_text)
        )
        return self.tokenizer.tokenize(text, add_bos=add_bos, special=True)

    def prompt_tokens(self, text: str) -> tuple[list[int], tuple[int, int] | None]:
        """Tokens for a prompt, reusing the last turn's tokens where exact.

        Returns the tokens and, when the prompt is the last turn's with a run of
        its tokens ``[i, j)`` left out (older messages dropped by the overflow
        policy), that run, so the KV cache can drop it in place."""
        last, last_tokens = self.last_text, self.last_tokens
        if last_tokens and last and text.startswith(last):
            rest = text[len(last) :]
            if not rest:
                return list(last_tokens), None
            tail = self.tail_tokens(rest)
            if tail is not None:
                return last_tokens + tail, None
        elif last_tokens and last:
            shifted = self._shifted_tokens(text)
            if shifted is not None:
                return shifted
        if last_tokens and last:
            # Keep the cached tokens up to the last control token both texts
            # share: re-tokenizing all would re-spell old replies (the model's
            # own tokens) and lose the cache from the first of them on.
            common = common_prefix(last, text)
            for k, at in reversed(self._control_marks()):
                if at <= common:
                    tail = self.tail_tokens(text[at:])
                    if tail is not None:
                        return last_tokens[:k] + tail, None
        return self.tokenize_prompt(text), None

    def tail_tokens(self, rest: str) -> list[int] | None:
        """``rest`` tokenized on its own, when that is exact: it starts with a
        control token (tokenizers split the text at those first). So is each
        segment of it from one control token to the next, and each is
        tokenized once: the prompts the overflow policy weighs share most."""
        starts = [m.start() for m in self.control_pattern().finditer(rest)]
        if not starts or starts[0] != 0:
            return None
        tail: list[int] = []
        for a, b in itertools.pairwise([*starts, len(rest)]):
            tokens = self._segment_tokens(rest[a:b])
            if tokens is None:
                return None
            tail += tokens
        return tail

    def control_pattern(self) -> re.Pattern[str]:
        """A pattern matching the text of any of the model's control tokens
        (made at the first call: ~70 ms for a vocabulary of 128k)."""
        if self._controls is None:
            tokenizer = self.tokenizer
            texts = {
                tokenizer.piece(t, special=True).decode("utf-8", errors="replace")
                for t in range(tokenizer.n_vocab())
                if tokenizer.is_control(t)
            }
            texts.discard("")
            alternatives = "|".join(re.escape(t) for t in sorted(texts, key=len, reverse=True))
            self._controls = re.compile(alternatives or "(?!)")
        return self._controls

    def _segment_tokens(self, segment: str) -> Sequence[int] | None:
        """Tokens of text starting with a control token (None if the tokenizer
        does not start it with that token), remembered."""
        known = self._segments.get(segment)
        if known is not None:
            return known
        tokenizer = self.tokenizer
        tokens = tokenizer.tokenize(segment, add_bos=False, special=True)
        first = tokens[0] if tokens else -1
        control = first >= 0 and tokenizer.is_control(first)
        if not (control and segment.encode().startswith(tokenizer.piece(first, special=True))):
            return None
        if self._segment_chars + len(segment) > SEGMENT_CHARS_KEPT:
            self._segments.clear()
            self._segment_chars = 0
        self._segments[segment] = array.array("i", tokens)
        self._segment_chars += len(segment)
        return tokens

    def _shifted_tokens(self, text: str) -> tuple[list[int], tuple[int, int]] | None:
        """The last turn's text is ``head + dropped + kept...`` and ``text`` is
        ``head + kept + rest``, each part starting at a control token: reuse the
        tokens of ``head`` and ``kept`` (the reply's own tokens among them when
        all of it is kept; else up to the last control token that matches) and
        tokenize the rest."""
        last, last_tokens = self.last_text, self.last_tokens
        marks = self._control_marks()
        common = common_prefix(last, text)
        heads = [(i, at) for i, at in marks if at <= common]
        if not heads:
            return None
        i, head = heads[-1]
        best: tuple[int, int, int] | None = None  # (matched chars, j, offset of j)
        probe = text[head : head + 64]  # most candidates differ early: check cheaply first
        for j, at in marks:
            if at <= head or not last.startswith(probe[:16], at):
                continue
            matched = common_prefix(last[at:], text[head:])
            if best is None or matched > best[0]:
                best = (matched, j, at)
        if best is None:
            return None
        matched, j, at = best
        if matched == len(last) - at:  # all of it, the last reply included
            tail = self.tail_tokens(text[head + matched :]) if text[head + matched :] else None
            if tail is not None:
                return last_tokens[:i] + last_tokens[j:] + tail, (i, j)
        for k, end in reversed(marks):  # else up to a control token inside the match
            if k <= j or end - at > matched:
                continue
            tail = self.tail_tokens(text[head + end - at :])
            if tail is not None:
                return last_tokens[:i] + last_tokens[j:k] + tail, (i, j)
        return None

    def _control_marks(self) -> list[tuple[int, int]]:
        """(token index, text offset) of each control token in the last prompt,
        in order; a BOS the tokenizer added (not in the text) has none."""
        if self._marks is not None:
            return self._marks
        tokenizer = self.tokenizer
        text = self.last_text[: self.last_prompt_chars]
        marks: list[tuple[int, int]] = []
        pos = 0
        for index, token in enumerate(self.last_tokens[: self.last_prompt_len]):
            if not tokenizer.is_control(token):
                continue
            piece = tokenizer.piece(token, special=True).decode("utf-8", errors="replace")
            at = text.find(piece, pos) if piece else -1
            if at < 0:
                continue
            marks.append((index, at))
            pos = at + len(piece)
        self._marks = marks
        return marks
