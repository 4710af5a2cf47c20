"""Reasoning ("thinking") models: which format a model thinks in, and a reply
split into its thinking and its answer as it streams.

A reasoning model writes its thinking before the answer, between markers its
chat template and vocabulary define: ``<think>``/``</think>`` (DeepSeek-R1
distills, QwQ, Qwen3, SmolLM3, GLM...), ``[THINK]``/``[/THINK]`` (Magistral,
Ministral reasoning), gpt-oss's harmony channels (``<|channel|>analysis
<|message|>`` ... ``<|end|>``, then ``<|channel|>final<|message|>``), Gemma
4's ``<|channel>thought`` ... ``<channel|>``, Apriel's ``[BEGIN FINAL
RESPONSE]``. :func:`detect` finds the format from the template's text and the
vocabulary's tokens, never from the file's name, and which of the template's
variables turn thinking on or off (``enable_thinking``, ``thinking``) or set
its effort (``reasoning_effort``).

:class:`Splitter` takes the reply's text in pieces cut anywhere (a marker
split across tokens, a stream cut at any byte) and returns the same split as
the whole text would give. It is pure: no llama.cpp, no model.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any, Literal

Family = Literal["think", "think-brackets", "harmony", "channel", "final-marker"]

THINKING_CHOICES = ("auto", "on", "off")
EFFORTS = ("low", "medium", "high")


@dataclass(frozen=True)
class ReasoningFormat:
    """How a model marks its thinking, and what its template lets the user set."""

    family: Family
    open: str | None
    """What opens a thinking block (None: only the prompt opens it, Apriel's way)."""
    close: str
    """What ends a thinking block; the answer follows."""
    drop: tuple[str, ...] = ()
    """Markers that are neither thinking nor answer (harmony's headers,
    Granite's ``<response>`` tags): removed from both."""
    switch: str | None = None
    """The template variable that turns thinking on or off, if it has one."""
    effort: bool = False
    """Whether the template reads ``reasoning_effort`` (low, medium, high)."""
    budget_close: str = ""
    """What the engine writes to end the thinking when its budget is spent."""

    def controls(self) -> tuple[str, ...]:
        """The generation settings that apply to this model."""
        names = ["thinking_budget"]
        if self.switch:
            names.insert(0, "thinking")
        if self.effort:
            names.append("reasoning_effort")
        return tuple(names)

    def markers(self) -> tuple[str, ...]:
        """Every marker text (to find the tokens that spell them)."""
        return tuple(m for m in (self.open, self.close, *self.drop) if m)


def _vocab_has(tokens: Collection[str], *texts: str) -> bool:
    return all(t in tokens for t in texts)


def detect(
    source: str | None, tokens: Collection[str], variables: Collection[str] = ()
) -> ReasoningFormat | None:
    """The reasoning format of a model with chat template ``source``, whose
    vocabulary has the single tokens ``tokens`` (the texts of its special and
    added tokens are enough) and whose template reads the top-level
    ``variables``; None for a model that does not think in a known format."""
    text = source or ""
    switch = next((v for v in ("enable_thinking", "thinking") if v in variables), None)
    effort = "reasoning_effort" in variables
    if "<|channel|>" in text or _vocab_has(tokens, "<|channel|>", "<|message|>"):
        return ReasoningFormat(
            "harmony",
            "<|channel|>analysis<|message|>",
            "<|end|>",
            drop=("<|start|>assistant", "<|channel|>final<|message|>", "<|return|>"),
            switch=None,  # gpt-oss always thinks; its effort is the control
            effort=effort,
            budget_close="<|end|><|start|>assistant<|channel|>final<|message|>",
        )
    if "<|channel>" in text and "<channel|>" in text:
        return ReasoningFormat(
            "channel",
            "<|channel>thought",
            "<channel|>",
            switch=switch,
            effort=effort,
            budget_close="<channel|>",
        )
    if "[THINK]" in text or _vocab_has(tokens, "[THINK]", "[/THINK]"):
        return ReasoningFormat(
            "think-brackets", "[THINK]", "[/THINK]", switch=switch, effort=effort,
            budget_close="[/THINK]",
        )  # fmt: skip
    if "[BEGIN FINAL RESPONSE]" in text:
        return ReasoningFormat(
            "final-marker",
            None,
            "[BEGIN FINAL RESPONSE]",
            drop=("[END FINAL RESPONSE]",),
            switch=switch,
            effort=effort,
            budget_close="\n[BEGIN FINAL RESPONSE]\n",
        )
    if "<think>" in text or _vocab_has(tokens, "<think>", "</think>"):
        drop = ("<response>", "</response>") if "<response>" in text else ()
        return ReasoningFormat(
            "think", "<think>", "</think>", drop=drop, switch=switch, effort=effort,
            budget_close="\n</think>\n\n",
        )  # fmt: skip
    return None


_HISTORY_FIELD = re.compile(
    r"""\b[A-Za-z_]\w*(?:\.|\[\s*['"]|\.get\(\s*['"])(reasoning_content|thinking|reasoning)\b"""
)
"""A message's field read as ``m.x``, ``message['x']`` or ``message.get('x')``."""


def history_fields(source: str | None) -> tuple[str, ...]:
    """The fields of an assistant message a template reads its earlier
    thinking from (``reasoning_content``, ``thinking``, ``reasoning``)."""
    return tuple(sorted(set(_HISTORY_FIELD.findall(source or ""))))


def template_kwargs(fmt: ReasoningFormat | None, thinking: str, effort: str) -> dict[str, Any]:
    """The variables a render passes for these settings: the switch when the
    user chose on or off (auto: the template's own default), the effort
    where the template reads one."""
    if fmt is None:
        return {}
    kwargs: dict[str, Any] = {}
    if fmt.switch and thinking in ("on", "off"):
        kwargs[fmt.switch] = thinking == "on"
    if fmt.effort:
        kwargs["reasoning_effort"] = effort
    return kwargs


def opens_thinking(fmt: ReasoningFormat, prompt_tail: str) -> bool:
    """Whether a prompt ending in ``prompt_tail`` (what the generation prompt
    added) leaves the model inside a thinking block: the R1 distills, QwQ and
    Qwen3 open ``<think>`` themselves; Apriel's replies always start inside."""
    if fmt.open is None:
        return fmt.close not in prompt_tail
    opened = prompt_tail.rfind(fmt.open)
    return opened >= 0 and prompt_tail.rfind(fmt.close) < opened


# -- the split ------------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """A run of reply text: thinking, or the answer."""

    text: str
    reasoning: bool


class Splitter:
    """A reply's text in, thinking and answer out, as it streams.

    Text that may be the start of a marker waits until it is one or cannot
    be. Whitespace at the start of a block and before its end is left out
    (``<think>\\n...\\n</think>\\n\\n`` gives the thought and the answer without
    the blank lines); a second thinking block joins the first after a blank
    line. Odd output never breaks it: a closing marker with no opening one,
    or a marker inside the wrong block, is dropped."""

    def __init__(self, fmt: ReasoningFormat, *, inside: bool = False) -> None:
        self.fmt = fmt
        self.inside = inside
        """Whether the text now being written is thinking."""
        self.blocks = 1 if inside else 0
        """Thinking blocks begun so far."""
        self._buf = ""
        self._space = ""  # whitespace held in the current block
        self._started = False  # whether the current block has shown text
        self._after_block = inside  # a thinking block began: the answer starts clean
        self._thought = False  # whether any thinking text was shown
        self._answered = False
        self._watch_in = tuple(m for m in (fmt.close, fmt.open, *fmt.drop) if m)
        self._watch_out = tuple(m for m in (fmt.open, fmt.close, *fmt.drop) if m)

    def feed(self, text: str) -> list[Part]:
        out: list[Part] = []
        self._buf += text
        while self._buf:
            watch = self._watch_in if self.inside else self._watch_out
            hit = _first(self._buf, watch)
            if hit is None:
                keep = _partial(self._buf, watch)
                self._emit(self._buf[: len(self._buf) - keep], out)
                self._buf = self._buf[len(self._buf) - keep :]
                break
            at, marker = hit
            self._emit(self._buf[:at], out)
            self._buf = self._buf[at + len(marker) :]
            self._marker(marker)
        return out

    def flush(self) -> list[Part]:
        """The end of the reply: what was held back (the thinking's trailing
        whitespace goes; the answer's stays)."""
        out: list[Part] = []
        self._emit(self._buf, out)
        self._buf = ""
        if not self.inside and self._space and self._answered:
            out.append(Part(self._space, False))
        self._space = ""
        return _merged(out)

    def _marker(self, marker: str) -> None:
        fmt = self.fmt
        if not self.inside and marker == fmt.open:
            self._switch(True)
        elif self.inside and marker == fmt.close:
            self._switch(False)
        # Anything else (a stray close, an open inside a block, a drop
        # marker) is left out.

    def _switch(self, inside: bool) -> None:
        self.inside = inside
        self._space = ""
        self._started = False
        if inside:
            self.blocks += 1
            self._after_block = True

    def _emit(self, text: str, out: list[Part]) -> None:
        if not text:
            return
        if not self._started:
            # The start of a block: no leading blank lines (the very start of
            # a reply that never thought is kept as written).
            if self.inside or self._after_block:
                text = text.lstrip()
                if not text:
                    return
            self._started = True
            if self._thought if self.inside else self._answered:
                self._space = "\n\n"  # a second block joins the first, after a blank line
        body = text.rstrip()
        trail = text[len(body) :]
        if not body:
            self._space += trail
            return
        out.append(Part(self._space + body, self.inside))
        self._space = trail
        if self.inside:
            self._thought = True
        else:
            self._answered = True


def _first(text: str, markers: Iterable[str]) -> tuple[int, str] | None:
    best: tuple[int, str] | None = None
    for m in markers:
        i = text.find(m)
        if i >= 0 and (best is None or i < best[0] or (i == best[0] and len(m) > len(best[1]))):
            best = (i, m)
    return best


def _partial(text: str, markers: Iterable[str]) -> int:
    """How many characters at the end of ``text`` may begin a marker."""
    keep = 0
    for m in markers:
        for k in range(min(len(m) - 1, len(text)), keep, -1):
            if text.endswith(m[:k]):
                keep = k
                break
    return keep


def _merged(parts: list[Part]) -> list[Part]:
    out: list[Part] = []
    for p in parts:
        if out and out[-1].reasoning == p.reasoning:
            out[-1] = Part(out[-1].text + p.text, p.reasoning)
        else:
            out.append(p)
    return out


def split(fmt: ReasoningFormat, text: str, *, inside: bool = False) -> tuple[str, str]:
    """A whole reply's (thinking, answer)."""
    splitter = Splitter(fmt, inside=inside)
    parts = splitter.feed(text) + splitter.flush()
    thinking = "".join(p.text for p in parts if p.reasoning)
    answer = "".join(p.text for p in parts if not p.reasoning)
    return thinking, answer
