"""A loaded reasoning model's thinking: its format (see ``reasoning.py``), the
tokens that spell its markers, the template variables a request's settings
set, and whether a prompt leaves the model inside a thinking block."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from localchat.core.engine.protocol import Message
from localchat.core.engine.reasoning import (
    ReasoningFormat,
    detect,
    opens_thinking,
    template_kwargs,
)
from localchat.core.engine.template import ChatTemplate
from localchat.core.engine.worker.tokenizer import LlamaTokenizer
from localchat.core.params import GenerationSettings

CANDIDATES = ("<think>", "</think>", "[THINK]", "[/THINK]", "<|channel|>", "<|message|>")
"""Marker texts looked for as single tokens of the vocabulary."""


@dataclass
class Thinking:
    fmt: ReasoningFormat
    marker_tokens: frozenset[int]
    """Control tokens that spell (part of) a marker: their text is read with
    the reply's (other control tokens stay silent)."""
    close_tokens: tuple[int, ...]
    """What the engine writes to end the thinking (its budget spent)."""
    template: ChatTemplate
    _opens: dict[tuple[tuple[str, Any], ...], bool] = field(default_factory=dict)

    def options(self, settings: GenerationSettings) -> dict[str, Any]:
        """The template variables these settings set."""
        return template_kwargs(self.fmt, settings.thinking, settings.reasoning_effort)

    def capabilities(self) -> tuple[str, ...]:
        """What the settings form offers for this model."""
        caps = ["thinking"]
        if self.fmt.switch:
            caps.append("thinking_switch")
        if self.fmt.effort:
            caps.append("reasoning_effort")
        return tuple(caps)

    def opens(self, options: dict[str, Any]) -> bool:
        """Whether the generation prompt, rendered with ``options``, leaves the
        model inside a thinking block (the R1 distills, QwQ, Qwen3 with
        thinking on): the reply then starts as thinking."""
        key = tuple(sorted(options.items()))
        if key not in self._opens:
            user: tuple[Message, ...] = ({"role": "user", "content": "Hi"},)
            bare = self.template.render(user, add_generation_prompt=False, options=options)
            full = self.template.render(user, add_generation_prompt=True, options=options)
            tail = full[len(bare) :] if full.startswith(bare) else full[-80:]
            self._opens[key] = opens_thinking(self.fmt, tail)
        return self._opens[key]


def thinking_of(template: ChatTemplate, tokenizer: LlamaTokenizer) -> Thinking | None:
    """The thinking of a model with this template and vocabulary (None: it
    does not think in a format LocalChat knows)."""

    def tokens(text: str) -> list[int]:
        return tokenizer.tokenize(text, add_bos=False, special=True)

    single = {text for text in CANDIDATES if len(tokens(text)) == 1}
    source = template.source if template.from_model else None
    fmt = detect(source, single, template.variables)
    if fmt is None:
        return None
    markers = {
        t
        for marker in fmt.markers()
        for t in tokens(marker)
        if tokenizer.piece(t, special=True) != tokenizer.piece(t, special=False)
    }
    return Thinking(fmt, frozenset(markers), tuple(tokens(fmt.budget_close)), template)
