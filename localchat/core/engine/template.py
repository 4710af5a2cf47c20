"""Chat templates: the model's own Jinja template, rendered in a sandbox.

A GGUF carries its template in ``tokenizer.chat_template``, exactly as the
model's authors published it for Hugging Face transformers. We render it the
way transformers (and llama-cpp-python's ``Jinja2ChatFormatter``) do: jinja2's
immutable sandbox, ``trim_blocks``/``lstrip_blocks``, ``loopcontrols``, the
``raise_exception``/``strftime_now`` helpers and a ``tojson`` that keeps
non-ASCII text. A template that tries to reach outside the sandbox is refused.

It lives here, not in llama-cpp-python, so rendering needs no llama.cpp: the
parent process can render and the worker imports only this.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
import jinja2.meta
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from localchat.core.engine.protocol import Message, Tool
from localchat.core.engine.reasoning import history_fields
from localchat.core.engine.tools import formats
from localchat.core.engine.tools.calls import template_messages
from localchat.core.engine.tools.prompting import plain_messages
from localchat.core.errors import EngineError, ModelLoadError

FALLBACK_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
"""ChatML, what llama.cpp itself falls back to for a model without a template."""


class _GenerationTag(jinja2.ext.Extension):
    """Transformers' ``{% generation %}`` marker: render its body unchanged."""

    tags = {"generation"}  # noqa: RUF012 (declared so by jinja2)

    def parse(self, parser: Any) -> Any:
        parser.stream.skip(1)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


def _tojson(
    x: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    return json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _raise(message: str) -> None:
    raise _TemplateRaised(message)


class _TemplateRaised(Exception):
    """The template called ``raise_exception`` (e.g. roles must alternate)."""


class ChatTemplate:
    """A compiled chat template with the model's BOS/EOS token texts."""

    def __init__(self, source: str | None, *, bos_token: str = "", eos_token: str = "") -> None:
        self.from_model = bool(source and source.strip())
        self.source = source if source and self.from_model else FALLBACK_TEMPLATE
        self.bos_token = bos_token
        self.eos_token = eos_token
        env = ImmutableSandboxedEnvironment(
            loader=jinja2.BaseLoader(),
            trim_blocks=True,
            lstrip_blocks=True,
            extensions=[_GenerationTag, jinja2.ext.loopcontrols],
        )
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        try:
            self._template = env.from_string(self.source)
            found = jinja2.meta.find_undeclared_variables(env.parse(self.source))
            self.variables = frozenset(found)
            """The variables the template reads beyond the messages (its switches)."""
        except TemplateError as exc:
            raise ModelLoadError(f"the model's chat template is invalid: {exc}") from None
        self.reasoning_fields = history_fields(self.source)
        """The fields of an assistant message it reads earlier thinking from."""
        self.reads_tools = "tools" in self.variables
        self.tool_format = formats.detect(self.source, self.reads_tools)
        """How its model writes tool calls."""
        self._short_ids = "length != 9" in self.source  # Mistral's call ids

    def render(
        self,
        messages: Sequence[Message],
        *,
        add_generation_prompt: bool = True,
        options: dict[str, Any] | None = None,
        tools: Sequence[Tool] = (),
    ) -> str:
        """The prompt text for ``messages``; ``options`` are the template's own
        variables (``enable_thinking``, ``reasoning_effort``...); ``tools``:
        the functions the model may call.

        A message's thinking (``reasoning``) goes into the field the template
        reads it from, if it reads one, never into the content. Templates
        that refuse a system message (Gemma's, for one) get the system prompt
        folded into the first user message instead. Calls and tool results
        go to a template that reads tools as transformers gives them; one
        that does not gets the tools, the calls and the results as text
        (``tools/prompting.py``)."""
        msgs = [self._with_reasoning(m) for m in messages]
        extra = dict(options or {})
        uses_tools = bool(tools) or any(m.get("tool_calls") or m["role"] == "tool" for m in msgs)
        if uses_tools and not self.reads_tools:
            msgs = plain_messages(msgs, tools)
        elif uses_tools:
            msgs = template_messages(msgs, short_ids=self._short_ids)
            if tools:
                extra["tools"] = list(tools)
        try:
            return self._render(msgs, add_generation_prompt, extra)
        except _TemplateRaised as exc:
            merged = _fold_system(msgs)
            if merged is None:
                raise EngineError(f"the chat template refused the conversation: {exc}") from None
            try:
                return self._render(merged, add_generation_prompt, extra)
            except _TemplateRaised as exc2:
                raise EngineError(f"the chat template refused the conversation: {exc2}") from None

    def _with_reasoning(self, message: Message) -> dict[str, Any]:
        out: dict[str, Any] = dict(message)
        if out.get("content") is None:
            # Clients send a call's message with content null, which some
            # templates cannot add to a string (QwQ's).
            out["content"] = ""
        reasoning = out.pop("reasoning", "")
        if reasoning:
            for name in self.reasoning_fields:
                out[name] = reasoning
        return out

    def _render(
        self, messages: list[dict[str, Any]], add_generation_prompt: bool, options: dict[str, Any]
    ) -> str:
        try:
            return self._template.render(
                messages=messages,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                add_generation_prompt=add_generation_prompt,
                **options,
            )
        except _TemplateRaised:
            raise
        except SecurityError as exc:
            raise ModelLoadError(
                f"the model's chat template was stopped: it tried something unsafe ({exc})"
            ) from None
        except TemplateError as exc:
            raise EngineError(f"the model's chat template failed: {exc}") from None
        except Exception as exc:  # a template can raise anything (TypeError, KeyError...)
            raise EngineError(
                f"the model's chat template failed: {type(exc).__name__}: {exc}"
            ) from None


def _fold_system(messages: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """Move system messages into the first user message; None when there are none."""
    system = [m["content"] for m in messages if m["role"] == "system"]
    if not system:
        return None
    rest = [dict(m) for m in messages if m["role"] != "system"]
    prefix = "\n\n".join(system)
    for m in rest:
        if m["role"] == "user":
            m["content"] = f"{prefix}\n\n{m['content']}"
            break
    else:
        rest.insert(0, {"role": "user", "content": prefix})
    return rest
