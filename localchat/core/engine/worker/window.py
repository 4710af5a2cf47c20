"""What the model sees of a conversation: the chat's overflow policy applied,
each candidate prompt counted with the very tokens that will be evaluated."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from localchat.core.chat.context import ContextOverflow, ContextPlan, plan, reply_reserve
from localchat.core.engine.protocol import (
    ContextReport,
    Message,
    PlanContext,
    PromptShown,
    ShowPrompt,
    Tool,
)
from localchat.core.engine.streaming import Utf8Assembler
from localchat.core.engine.worker.loader import Model
from localchat.core.params import GenerationSettings

Prompt = tuple[str, list[int], tuple[int, int] | None]
"""A rendered prompt, its tokens, and the run of cached tokens it leaves out."""


def window(
    model: Model, messages: Sequence[Message], s: GenerationSettings, tools: tuple[Tool, ...] = ()
) -> tuple[ContextPlan, int, Callable[[Sequence[Message]], Prompt]]:
    """Apply the chat's overflow policy: what the model sees of
    ``messages``, counted with the very tokens that will be evaluated, room
    kept for the reply. Returns the plan, how many messages were put in
    front (the settings' system prompt), and the memoized prompt builder."""
    model.use(s, tools)  # thinking on or off, its effort, the tools: what the template renders
    msgs = list(messages)
    added = 0
    if s.system_prompt and not any(m["role"] == "system" for m in msgs):
        msgs.insert(0, {"role": "system", "content": s.system_prompt})
        added = 1
    n_ctx = model.llm.n_ctx()
    reserve = reply_reserve(s.max_tokens, n_ctx)
    cache = model.cache
    # Each candidate is rendered and tokenized once, the chosen one included.
    prompts: dict[str, Prompt] = {}

    def prompt(candidate: Sequence[Message]) -> Prompt:
        key = json.dumps(candidate, sort_keys=True)
        if key not in prompts:
            rendered = model.render(tuple(candidate))
            prompts[key] = (rendered, *cache.prompt_tokens(rendered))
        return prompts[key]

    chosen = plan(
        msgs,
        lambda m: len(prompt(m)[1]),
        n_ctx=n_ctx,
        reserve=reserve,
        policy=s.overflow,  # type: ignore[arg-type]  # validated by its declaration
        chunk=(n_ctx - reserve) // 4,
        # The same every turn: spelled afresh, not with cached tokens.
        measure=lambda m: len(cache.tokenize_prompt(model.render(tuple(m)))),
    )
    return chosen, added, prompt


def plan_context(model: Model, req: PlanContext) -> ContextReport:
    """What the model would see of the messages if they were sent now."""
    try:
        chosen, added, prompt = window(model, req.messages, req.settings, req.tools)
    except ContextOverflow as exc:  # the "stop" policy: nothing dropped, the excess said
        return ContextReport(
            prompt_tokens=exc.n_ctx - exc.reserve + exc.excess,
            n_ctx=exc.n_ctx,
            reserve=exc.reserve,
            excess=exc.excess,
        )
    thinking = 0
    if model.template.reasoning_fields and any(m.get("reasoning") for m in chosen.messages):
        # What the thinking costs: the prompt with and without it.
        bare: list[Message] = [
            {k: v for k, v in m.items() if k != "reasoning"}  # type: ignore[misc]
            for m in chosen.messages
        ]
        thinking = max(chosen.prompt_tokens - len(prompt(bare)[1]), 0)
    return ContextReport(
        prompt_tokens=chosen.prompt_tokens,
        n_ctx=chosen.n_ctx,
        reserve=chosen.reserve,
        dropped=tuple(i - added for i in chosen.dropped),
        cut=None if chosen.cut is None else chosen.cut - added,
        thinking_tokens=thinking,
    )


def show_prompt(model: Model, req: ShowPrompt) -> PromptShown:
    """The exact prompt the model would read (the prompt X-ray): the
    overflow policy applied as for a reply, each token with its text."""
    chosen, added, prompt = window(model, req.messages, req.settings, req.tools)
    text, tokens, _shift = prompt(chosen.messages)
    utf8 = Utf8Assembler()
    pieces = []
    for t in tokens:
        pieces.append((t, utf8.feed(model.tokenizer.piece(t, special=True))))
    if pieces:
        last = pieces[-1]
        pieces[-1] = (last[0], last[1] + utf8.flush())
    return PromptShown(
        text=text,
        tokens=tuple(pieces),
        dropped=tuple(i - added for i in chosen.dropped if i >= added),
        n_ctx=chosen.n_ctx,
        reserve=chosen.reserve,
    )
