"""Which messages the model sees when a conversation outgrows its context.

Counting is exact: ``count(messages)`` renders the messages with the model's
own chat template and tokenizes the result (``Engine.render``), so what is
planned here is what llama.cpp will evaluate. Room for the reply
(``reserve``, the max tokens setting) is kept free.

Policies, chosen per chat:

- ``rolling`` (the default): drop the oldest exchanges, never the system
  prompt, until the rest fits.
- ``keep-start``: keep the system prompt and the first exchange (where the
  task is usually stated), drop from the middle.
- ``stop``: drop nothing; refuse, saying by how many tokens it is over.

Trimming goes in chunks (``chunk`` tokens, a quarter of the room by the
engine's choice): once messages must go, enough go that the next few turns fit
without dropping more, so the engine moves its KV cache once per chunk, not
every turn. The cut points depend only on the old messages, never on the new
ones, so successive turns agree on them without remembering anything.

Whole messages are dropped, a user message together with the replies that
answer it, so the model never sees a reply without its question. Only when
the last message alone cannot fit is it cut, with a visible notice. The
messages left out stay in the chat; only the model stops seeing them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from localchat.core.engine.protocol import Message
from localchat.core.errors import LocalChatError

Policy = Literal["rolling", "keep-start", "stop"]
POLICIES: tuple[Policy, ...] = ("rolling", "keep-start", "stop")
"""Declared with the other settings as ``GenerationSettings.overflow``."""
CUT_NOTICE = "\n\n[… the rest of this message was cut: it does not fit in the context]"

Counter = Callable[[Sequence[Message]], int]


class ContextOverflow(LocalChatError):
    """The conversation does not fit and the chat's policy is to stop."""

    def __init__(self, excess: int, n_ctx: int, reserve: int) -> None:
        self.excess = excess
        super().__init__(
            f"the conversation is {excess} tokens over the {n_ctx}-token context "
            f"({reserve} kept for the reply): start a new chat, raise the context size, "
            "or let old messages drop out"
        )


@dataclass(frozen=True)
class ContextPlan:
    messages: tuple[Message, ...]
    """What the model will see."""
    dropped: tuple[int, ...]
    """Indexes (in the conversation given) of the messages left out."""
    prompt_tokens: int
    """Exact tokens of the rendered prompt."""
    n_ctx: int
    reserve: int
    cut: int | None = None
    """Index of a message shortened because it could not fit even alone."""

    @property
    def free(self) -> int:
        return self.n_ctx - self.prompt_tokens


def plan(
    messages: Sequence[Message],
    count: Counter,
    *,
    n_ctx: int,
    reserve: int,
    policy: Policy = "rolling",
    chunk: int = 0,
) -> ContextPlan:
    """Choose the messages the model sees so that they and ``reserve`` tokens
    for the reply fit in ``n_ctx``; when some must go, drop at least up to the
    next multiple of ``chunk`` tokens (0: only what must go)."""
    if policy not in POLICIES:
        raise LocalChatError(f"unknown overflow policy {policy!r}; choose one of {POLICIES}")
    budget = n_ctx - reserve
    if budget <= 0:
        raise LocalChatError(
            f"the reply's {reserve} tokens leave no room in a {n_ctx}-token context"
        )
    msgs = list(messages)
    total = count(msgs)
    if total <= budget:
        return ContextPlan(tuple(msgs), (), total, n_ctx, reserve)
    if policy == "stop":
        raise ContextOverflow(total - budget, n_ctx, reserve)

    system = [i for i, m in enumerate(msgs) if m["role"] == "system" and i == _lead(msgs, i)]
    turns = _turns(msgs, start=len(system))
    keep_first = policy == "keep-start" and len(turns) > 1
    droppable = turns[1:-1] if keep_first else turns[:-1]

    def keep(n_dropped: int) -> list[int]:
        gone = {i for turn in droppable[:n_dropped] for i in turn}
        return [i for i in range(len(msgs)) if i not in gone]

    # The fewest oldest turns to drop: counts only fall as turns go, so bisect.
    lo, hi = 0, len(droppable)
    if count([msgs[i] for i in keep(hi)]) > budget:
        return _cut_last(msgs, keep(hi), count, n_ctx, reserve, budget)
    while lo < hi:
        mid = (lo + hi) // 2
        if count([msgs[i] for i in keep(mid)]) <= budget:
            hi = mid
        else:
            lo = mid + 1
    if chunk > 0 and lo > 0:
        lo = _chunk_end(
            lo, len(droppable), lambda k: total - count([msgs[i] for i in keep(k)]), chunk
        )
    kept = keep(lo)
    chosen = [msgs[i] for i in kept]
    dropped = tuple(i for i in range(len(msgs)) if i not in set(kept))
    return ContextPlan(tuple(chosen), dropped, count(chosen), n_ctx, reserve)


def _chunk_end(need: int, most: int, dropped_tokens: Callable[[int], int], chunk: int) -> int:
    """Round a cut of ``need`` turns up to a chunk boundary: the first cut whose
    dropped tokens reach the multiple of ``chunk`` that ``need - 1`` turns do not.

    ``dropped_tokens(k)`` (the tokens of the first ``k`` droppable turns) only
    depends on those turns, so while the same ``need - 1`` turns stay under the
    same multiple, every turn picks the same cut."""
    target = (dropped_tokens(need - 1) // chunk + 1) * chunk
    if dropped_tokens(most) < target:
        return most
    lo, hi = need, most
    while lo < hi:
        mid = (lo + hi) // 2
        if dropped_tokens(mid) >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _lead(msgs: list[Message], i: int) -> int:
    """System messages count as the system prompt only at the start."""
    return i if all(m["role"] == "system" for m in msgs[: i + 1]) else -1


def _turns(msgs: list[Message], start: int) -> list[list[int]]:
    """Group message indexes into turns: a user message and what follows it."""
    turns: list[list[int]] = []
    for i in range(start, len(msgs)):
        if msgs[i]["role"] == "user" or not turns:
            turns.append([i])
        else:
            turns[-1].append(i)
    return turns


def _cut_last(
    msgs: list[Message], kept: list[int], count: Counter, n_ctx: int, reserve: int, budget: int
) -> ContextPlan:
    """Even the system prompt and the last turn do not fit: shorten the last
    message (keeping its start) until they do."""
    last = kept[-1]
    text = msgs[last]["content"]
    head = [msgs[i] for i in kept[:-1]]

    def with_prefix(n: int) -> list[Message]:
        shortened: Message = {"role": msgs[last]["role"], "content": text[:n] + CUT_NOTICE}
        return [*head, shortened]

    if count(with_prefix(0)) > budget:
        raise ContextOverflow(count(with_prefix(0)) - budget, n_ctx, reserve)
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(with_prefix(mid)) <= budget:
            lo = mid
        else:
            hi = mid - 1
    chosen = with_prefix(lo)
    dropped = tuple(i for i in range(len(msgs)) if i not in set(kept))
    return ContextPlan(tuple(chosen), dropped, count(chosen), n_ctx, reserve, cut=last)
