"""Which messages the model sees when a conversation outgrows its context.

Counting is exact: ``count(messages)`` renders the messages with the model's
own chat template and tokenizes the result (``Engine.render``), so what is
planned here is what llama.cpp will evaluate. Room for the reply
(``reserve``: the max tokens setting, at most a quarter of the context, see
:func:`reply_reserve`) is kept free.

Policies, chosen per chat:

- ``rolling`` (the default): drop the oldest exchanges, never the system
  prompt, until the rest fits.
- ``keep-start``: keep the system prompt and the first exchange (where the
  task is usually stated), drop from the middle.
- ``stop``: drop nothing; refuse, saying by how many tokens it is over.

Trimming goes in chunks (``chunk`` tokens, a quarter of the room by the
engine's choice): once messages must go, enough go that the next few turns fit
without dropping more, so the engine moves its KV cache once per chunk, not
every turn. The cut points depend only on the old messages (their sizes),
never on the new ones, so successive turns agree on them without remembering
anything. The search starts from the newest messages, so a long chat costs
counting a few windows, never its whole history.

Whole messages are dropped, a user message together with the replies that
answer it, so the model never sees a reply without its question. Only when
the last message alone cannot fit is it cut, with a visible notice. The
messages left out stay in the chat; only the model stops seeing them.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from localchat.core.engine.protocol import Message
from localchat.core.errors import LocalChatError

Policy = Literal["rolling", "keep-start", "stop"]
POLICIES: tuple[Policy, ...] = ("rolling", "keep-start", "stop")
"""Declared with the other settings as ``GenerationSettings.overflow``."""
RESERVE_SHARE = 4
"""The reply's reserve is at most 1/RESERVE_SHARE of the context."""


def reply_reserve(max_tokens: int, n_ctx: int) -> int:
    """Tokens kept free for the reply when choosing what the model sees: the
    max reply tokens, but at most a quarter of the context, so a small context
    keeps room for the conversation (the demo's 256 keeps 64, not 128, and its
    first exchange stays in view at turn two). A reply may still grow past the
    reserve into whatever room the prompt leaves."""
    return max(1, min(max_tokens, n_ctx // RESERVE_SHARE))


CUT_NOTICE = "\n\n[… the rest of this message was cut: it does not fit in the context]"

Counter = Callable[[Sequence[Message]], int]


class ContextOverflow(LocalChatError):
    """The conversation does not fit and the chat's policy is to stop."""

    def __init__(self, excess: int, n_ctx: int, reserve: int) -> None:
        self.excess, self.n_ctx, self.reserve = excess, n_ctx, reserve
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
    measure: Counter | None = None,
) -> ContextPlan:
    """Choose the messages the model sees so that they and ``reserve`` tokens
    for the reply fit in ``n_ctx``; when some must go, drop at least up to the
    next multiple of ``chunk`` tokens (0: only what must go).

    ``measure`` (default ``count``) sizes the chunks: it must give the same
    answer for the same messages every turn. The engine's ``count`` need not:
    it spells old replies with the tokens the model generated while they stay
    cached, and afresh otherwise, and chunk boundaries that moved between
    turns brought dropped messages back into view (and the whole prompt was
    evaluated again)."""
    if policy not in POLICIES:
        raise LocalChatError(f"unknown overflow policy {policy!r}; choose one of {POLICIES}")
    budget = n_ctx - reserve
    if budget <= 0:
        raise LocalChatError(
            f"the reply's {reserve} tokens leave no room in a {n_ctx}-token context"
        )
    msgs = list(messages)
    if policy == "stop":
        total = count(msgs)
        if total <= budget:
            return ContextPlan(tuple(msgs), (), total, n_ctx, reserve)
        raise ContextOverflow(total - budget, n_ctx, reserve)

    system = [i for i, m in enumerate(msgs) if m["role"] == "system" and i == _lead(msgs, i)]
    turns = _turns(msgs, start=len(system))
    keep_first = policy == "keep-start" and len(turns) > 1
    droppable = turns[1:-1] if keep_first else turns[:-1]

    def keep(n_dropped: int) -> list[int]:
        gone = {i for turn in droppable[:n_dropped] for i in turn}
        return [i for i in range(len(msgs)) if i not in gone]

    def fits(n_dropped: int) -> bool:
        return count([msgs[i] for i in keep(n_dropped)]) <= budget

    most = len(droppable)
    if not fits(most):
        return _cut_last(msgs, keep(most), count, n_ctx, reserve, budget)
    n = _fewest(fits, most)
    if chunk > 0 and n > 0:
        # Turn sizes, in tokens at the bytes per token of the system prompt and
        # the first droppable turn: messages that never change, so every turn
        # of the chat measures the same.
        sample = [msgs[i] for i in [*system, *droppable[0]]]
        tokens = (measure or count)(sample)
        per_token = max(sum(_size(m) for m in sample) / max(tokens, 1), 0.25)
        sizes = [sum(_size(msgs[i]) for i in turn) / per_token for turn in droppable]
        rounded = _chunk_end(n, sizes, chunk)
        # Counts need not fall as turns go (a prompt that keeps the model's own
        # tokens for old replies can be shorter than one that spells them
        # afresh): the rounded cut is taken only where it fits.
        if rounded == n or fits(rounded):
            n = rounded
    kept = keep(n)
    chosen = [msgs[i] for i in kept]
    dropped = tuple(i for i in range(len(msgs)) if i not in set(kept))
    return ContextPlan(tuple(chosen), dropped, count(chosen), n_ctx, reserve)


def _fewest(fits: Callable[[int], bool], most: int) -> int:
    """The fewest turns to drop, given that dropping ``most`` fits (counts only
    fall as turns go). Searched from the newest end, doubling the turns kept,
    then bisecting: a long chat's whole history is never counted, only windows
    up to about twice the context."""
    fit, step = most, 1
    unfit = -1
    while fit > 0:
        k = max(fit - step, 0)
        if not fits(k):
            unfit = k
            break
        fit, step = k, step * 2
    while fit - unfit > 1:
        mid = (unfit + fit) // 2
        if fits(mid):
            fit = mid
        else:
            unfit = mid
    return fit


def _size(message: Message) -> int:
    return len(message["content"].encode())


def _chunk_end(need: int, sizes: list[float], chunk: int) -> int:
    """Round a cut of ``need`` turns up to a chunk boundary: the first cut whose
    dropped turns (``sizes``, in tokens) reach the multiple of ``chunk`` that
    ``need - 1`` turns do not.

    The boundaries only depend on the sizes of the old turns, so while the same
    ``need - 1`` turns stay under the same multiple, every turn picks the same cut."""
    cum = list(itertools.accumulate(sizes, initial=0.0))  # cum[k]: the first k turns
    target = (cum[need - 1] // chunk + 1) * chunk
    return min(bisect.bisect_left(cum, target, lo=need), len(sizes))


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
