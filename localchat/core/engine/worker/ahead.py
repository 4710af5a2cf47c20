"""Evaluating the start of the next prompt between turns.

Once a reply is in, the start of the next prompt is known: the conversation
so far and the header of the user's next message. While the user reads and
types, the worker evaluates what of it the cache lacks (the reply's
end-of-turn and the header; the whole reply where the template rewrites it,
trimming its whitespace or dropping its reasoning, or a stop string cut it),
a chunk at a time. A request preempts it: the parent sets
:attr:`~localchat.core.engine.protocol.Flag.REQUEST_WAITING` before sending
one (and the worker clears it on receiving it), which the abort callback reads
while evaluating ahead and the loop between chunks. The work resumes after
requests that leave the cache alone (the context meter's).
"""

from __future__ import annotations

from collections.abc import Callable

from localchat.core.engine.protocol import Message
from localchat.core.engine.worker.flags import Flags
from localchat.core.engine.worker.llama_log import LlamaLog
from localchat.core.engine.worker.loader import Model
from localchat.core.engine.worker.prompt_cache import common_prefix, common_tokens
from localchat.core.errors import LocalChatError

AHEAD_CHUNK = 64
"""Tokens evaluated ahead per decode: what a preempted evaluation loses at most."""


class EvaluationAhead:
    """The conversation whose next prompt to start evaluating, and how far
    that got."""

    def __init__(self, flags: Flags, log: LlamaLog, request_in_pipe: Callable[[], bool]) -> None:
        self.flags = flags
        self.log = log
        self._request_in_pipe = request_in_pipe
        self.conversation: tuple[Message, ...] | None = None
        """The conversation so far (its last message the reply), while there
        is work to do."""
        self._head: tuple[str, list[int]] | None = None  # the next prompt's start, and tokens

    @property
    def pending(self) -> bool:
        return self.conversation is not None

    def start(self, conversation: tuple[Message, ...]) -> None:
        """A reply is in: evaluate the start of the prompt that follows it."""
        self.conversation = conversation
        self._head = None

    def stop(self) -> None:
        """No more of it (a request that changes the cache came)."""
        self.conversation = None

    def run(self, model: Model | None) -> None:
        """Evaluate the start of the next prompt until done or a request comes;
        a later call resumes."""
        assert self.conversation is not None
        if self._request_first():
            return
        if model is None or model.vocab_only:
            self.conversation = None
            return
        llm, cache = model.llm, model.cache
        if self._head is None:
            try:
                text = next_head(model, self.conversation)
            except LocalChatError:  # the next turn will say what the template refused
                text = ""
            tokens, shift = cache.prompt_tokens(text) if text else ([], None)
            if not tokens or shift or len(tokens) >= llm.n_ctx():
                self.conversation = None
                return
            self._head = text, tokens
        text, tokens = self._head
        held = common_tokens(llm.input_ids[: llm.n_tokens].tolist(), tokens)
        if held == len(tokens):  # all there: leave the cache (and what it remembers) be
            self.conversation = None
            return
        # Keep what the next prompt shares with the cache (a regenerated
        # reply's prompt is among it), drop the rest, and remember the head.
        if held < llm.n_tokens:
            if not llm._ctx.kv_cache_seq_rm(-1, held, -1):
                self.conversation = None
                return
            llm.n_tokens = held
        cache.remember(text, tokens, "", [])
        if cache.ahead_at <= held <= cache.ahead_end:
            cache.ahead_end = held  # resumed: the tokens evaluated so far stay
        else:
            cache.ahead_at = cache.ahead_end = held
        # A preempted decode is not an error worth logging.
        with self.flags.abort_on_request(llm), self.log.quiet():
            try:
                for start in range(held, len(tokens), AHEAD_CHUNK):
                    if self._request_first():
                        return
                    llm.eval(tokens[start : start + AHEAD_CHUNK])
                    cache.ahead_end = llm.n_tokens
            except RuntimeError:  # preempted (or failed: the next turn evaluates it)
                llm._ctx.kv_cache_seq_rm(-1, llm.n_tokens, -1)
                cache.ahead_end = llm.n_tokens
                if not self.flags.request_waiting:
                    self.conversation = None
                return
        self.conversation = None

    def _request_first(self) -> bool:
        return self.flags.request_waiting or self._request_in_pipe()


def next_head(model: Model, messages: tuple[Message, ...]) -> str:
    """The start of the prompt after ``messages`` that does not depend on
    the user's next message: up to the end of the last control token before
    its text (tokenizers split there first, so its tokens begin the next
    prompt's)."""
    a, b = (model.render((*messages, {"role": "user", "content": c})) for c in "ab")
    common = a[: common_prefix(a, b)]
    controls = list(model.cache.control_pattern().finditer(common))
    return common[: controls[-1].end()] if controls else ""
