"""A chat reply: the prompt's tokens fitted to the KV cache (reused, or a run
of old messages dropped in place), the reply generated and streamed a piece at
a time, stopped by the user, a stop string or the context, and the turn
remembered for the next prompt."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Generator, Sequence

import llama_cpp

from localchat.core.engine.protocol import (
    Chat,
    ChatResult,
    FinishReason,
    Message,
    Piece,
    TokenLogprob,
)
from localchat.core.engine.worker.flags import Flags
from localchat.core.engine.worker.grammar import compile_grammar
from localchat.core.engine.worker.llama_log import LlamaLog
from localchat.core.engine.worker.loader import Model
from localchat.core.engine.worker.logprobs import Position, Probe, token_entries
from localchat.core.engine.worker.prompt_cache import reusable_prefix
from localchat.core.engine.worker.reply_text import ReplyText
from localchat.core.engine.worker.tokenizer import LlamaTokenizer
from localchat.core.engine.worker.window import window
from localchat.core.errors import EngineError


def chat(
    model: Model, req: Chat, flags: Flags, log: LlamaLog, say: Callable[[Piece], None]
) -> tuple[ChatResult, tuple[Message, ...] | None]:
    """Generate the reply, sending its text as it comes (``say``). Returns the
    result and the conversation with the reply in it, whose next prompt to
    evaluate ahead (None when the user cancelled: they want the machine back)."""
    t0 = time.perf_counter()
    llm, cache, tokenizer = model.llm, model.cache, model.tokenizer
    if model.vocab_only:
        raise EngineError("this model was loaded for its tokenizer only; load it fully to chat")
    s = req.settings
    grammar = None
    if req.grammar is not None:
        if req.prefix:
            # The grammar sampler sees only sampled tokens: placed ones would
            # leave it at the start while the reply is under way.
            raise EngineError("a reply's start cannot be given together with a grammar")
        grammar = compile_grammar(llm, req.grammar, log)
    n_ctx = llm.n_ctx()
    if req.raw is None:
        seen, added, prompt = window(model, req.messages, s, req.tools)
        messages, dropped = seen.messages, tuple(i - added for i in seen.dropped)
        text, tokens, shift = prompt(messages)
    else:
        # A text completed as it is: no template, nothing dropped.
        model.use(s)
        messages, dropped = (), ()
        text = req.raw
        tokens, shift = cache.prompt_tokens(text)
    if len(tokens) >= n_ctx:
        raise EngineError(
            f"{'the prompt' if req.raw is not None else 'the conversation'} needs "
            f"{len(tokens)} tokens but the context holds {n_ctx}; "
            "start a new chat or raise the context size"
        )
    room = n_ctx - len(tokens)
    max_new = min(s.max_tokens, room)

    shifted = shift_cache(llm, cache.last_tokens, *shift) if shift else 0
    prefix = reusable_prefix(llm.input_ids[: llm.n_tokens].tolist(), tokens)
    if prefix and not llm._ctx.kv_cache_seq_rm(-1, prefix, -1):
        prefix = 0
    if prefix == 0:
        llm.reset()
    llm.n_tokens = prefix
    # Tokens evaluated ahead, between turns, count as this turn's: the
    # count is the same whether the user took a minute or sent at once.
    ahead = cache.take_ahead(prefix, shift, shifted)
    evaluated = len(tokens) - prefix + ahead

    llm.set_seed(s.seed if s.seed >= 0 else random.randrange(2**32 - 1))
    args = s.llama_args("sampling")
    args.pop("seed", None)
    thinking = model.thinking if req.raw is None else None
    inside = thinking is not None and thinking.opens(model.options)
    shown = model.tool_marker_tokens() if req.tools else frozenset()
    probe = Probe(llm, tokenizer, req.top_logprobs, s) if req.logprobs else None
    taken: list[int] = []  # what the sampler has taken, for the penalty (per generate)
    reads: list[Position | None] = []  # each token's position, read as asked

    def entry(i: int) -> TokenLogprob:
        assert probe is not None
        read = reads[i] if i < len(reads) else None  # a placed token's comes after it
        return probe.streamed(reply.tokens[i], reply.texts[i], read)

    streamed = probe is not None and req.stream_logprobs
    reply = ReplyText(
        tokenizer,
        req.stop,
        thinking,
        say,
        inside=inside,
        shown=shown,
        entry=entry if streamed else None,
    )
    first = tokens[prefix:]
    if req.prefix:
        # The reply starts with tokens given (an earlier reply's, up to the
        # token the user chose): placed, evaluated with the prompt, then the
        # model samples on.
        bad = [t for t in req.prefix if not 0 <= t < llm.n_vocab()]
        if bad:
            raise EngineError(f"token {bad[0]} is not in this model's vocabulary")
        if len(req.prefix) >= max_new:
            raise EngineError("the reply's start given is longer than the room for the reply")
        for t in req.prefix:
            reply.add(t)
            reads.append(None)
        first = [*first, *req.prefix]
    elif thinking is not None and inside and s.thinking == "off":
        # Asked not to think, by a template with no switch for it: the
        # engine closes the thinking the prompt opened, before the model
        # writes a token.
        for t in thinking.close_tokens:
            reply.add(t)
            reads.append(None)
        first = [*first, *thinking.close_tokens]

    # The grammar holds for the answer: a reasoning model thinks freely and
    # the grammar starts when the thinking ends (the generate then starts
    # afresh, as for the thinking budget). Each generate makes a new sampler,
    # the grammar's state with it, at the grammar's start.
    constrained = False

    def generate(start: list[int]) -> Generator[int, None, None]:
        nonlocal constrained
        constrained = grammar is not None and not reply.thinking
        return llm.generate(
            start,
            reset=False,
            typical_p=1.0,
            frequency_penalty=0.0,
            presence_penalty=0.0,
            tfs_z=1.0,
            mirostat_mode=0,
            mirostat_tau=5.0,
            mirostat_eta=0.1,
            penalize_nl=True,
            grammar=grammar if constrained else None,
            **args,
        )

    gen = generate(first)
    finish: FinishReason = "length"
    t_first = t_last = 0.0
    try:
        while True:
            try:
                token = next(gen)
            except StopIteration:
                finish = "stop"
                break
            except RuntimeError:
                if flags.cancelled:
                    finish = "cancelled"
                    break
                raise EngineError(f"llama.cpp failed to evaluate: {log.last_error()}") from None
            t_last = time.perf_counter()
            if not t_first:
                t_first = t_last
            if flags.cancelled:
                finish = "cancelled"
                break
            if tokenizer.is_end_of_generation(token):
                finish = "stop"
                break
            if probe is not None:
                reads.append(probe.read(token, taken))  # before the next decode
                taken.append(token)
            if reply.add(token):
                finish = "stop"
                break
            if len(reply.tokens) >= max_new:
                finish = "length" if max_new == s.max_tokens else "context"
                break
            if thinking is not None and over_budget(reply, s.thinking_budget):
                # The thinking's budget is spent: close it (the template's own
                # marker, as llama.cpp's reasoning budget does); the model
                # goes on to answer. The last token is not evaluated yet:
                # it goes in with the marker.
                for t in thinking.close_tokens:
                    reply.add(t)
                    reads.append(None)
                gen.close()
                gen = generate([token, *thinking.close_tokens])
                taken.clear()  # a new generate: llama-cpp-python's sampler starts afresh
            elif grammar is not None and not constrained and not reply.thinking:
                # The thinking ended: the answer follows the grammar.
                gen.close()
                gen = generate([token])
                taken.clear()
    finally:
        gen.close()
    reply.finish()

    # Remember this turn for the next prompt's prefix reuse. After a stop
    # string, or with thinking, the reply's text is not what its tokens spell.
    answer, thought = "".join(reply.answer), "".join(reply.thought)
    if reply.hit_stop or reply.used_markers:
        cache.remember(text, tokens, "", [])
    elif req.raw is not None:
        cache.remember(text, tokens, answer, reply.tokens)
    else:
        cache.remember(text, tokens, *as_rendered(model, messages, text, answer, reply.tokens))
    conversation: tuple[Message, ...] | None = None
    if finish != "cancelled" and req.raw is None:  # else the user wants the machine back
        said: Message = {"role": "assistant", "content": answer}
        if thought:
            said["reasoning"] = thought
        conversation = (*messages, said)
    now = time.perf_counter()
    n = len(reply.tokens)
    result = ChatResult(
        reply=answer,
        finish_reason=finish,
        prompt_tokens=len(tokens),
        evaluated_tokens=evaluated,
        ahead_tokens=ahead,
        completion_tokens=n,
        ttft_ms=((t_first or now) - t0) * 1000,
        tokens_per_s=(n - 1) / (t_last - t_first) if n > 1 and t_last > t_first else 0.0,
        context_size=n_ctx,
        context_used=len(tokens) + n,
        trimmed_messages=len(dropped),
        dropped=dropped,
        shifted_tokens=shifted,
        reasoning=thought,
        reasoning_tokens=reply.reasoning_tokens,
        content_tokens=n - reply.reasoning_tokens,
        thinking_ms=reply.thinking_ms(),
        tokens=token_entries(probe, reply.tokens, reply.texts, reads, reply.thinking_flags)
        if probe is not None
        else (),
    )
    return result, conversation


def over_budget(reply: ReplyText, budget: int) -> bool:
    """Whether the thinking has used up its budget (0: no limit)."""
    return budget > 0 and reply.thinking and reply.reasoning_tokens >= budget


def shift_cache(llm: llama_cpp.Llama, cached: list[int], i: int, j: int) -> int:
    """Drop cached tokens ``[i, j)`` and move the rest down, in place
    (llama.cpp re-rotates the moved keys); ``cached``: the tokens the prompt
    cache remembers the KV cache holds. Returns the tokens dropped, or 0
    where it cannot: memory that cannot shift, or a cache that does not hold
    those tokens."""
    n = min(llm.n_tokens, len(cached))  # past the reply a stop string cut
    memory = llama_cpp.llama_get_memory(llm._ctx.ctx)
    if j > n or not llama_cpp.llama_memory_can_shift(memory):
        return 0
    if llm.input_ids[:n].tolist() != cached[:n]:
        return 0
    if not llama_cpp.llama_memory_seq_rm(memory, 0, n, -1):
        return 0
    if not llama_cpp.llama_memory_seq_rm(memory, 0, i, j):
        return 0
    llama_cpp.llama_memory_seq_add(memory, 0, j, n, i - j)
    llm.input_ids[i : n - (j - i)] = llm.input_ids[j:n]
    llm.n_tokens = n - (j - i)
    return j - i


def as_rendered(
    model: Model, messages: Sequence[Message], text: str, reply: str, reply_tokens: list[int]
) -> tuple[str, list[int]]:
    """The reply as the next prompt will show it, and its tokens. Many
    templates trim messages (Llama 3's do): a reply that starts or ends with
    whitespace then reads differently next turn, and its whitespace tokens
    must go for the cached tokens to match. Where they cannot (the space is
    part of a bigger token, or the template rewrites old replies), only the
    prompt is remembered and the reply is evaluated again next turn."""
    if not reply or reply == reply.strip():
        return reply, reply_tokens
    rendered = model.render((*messages, {"role": "assistant", "content": reply}), False)
    if not rendered.startswith(text):
        return "", []
    shown = rendered[len(text) :]
    for kept in (reply, reply.strip(), reply.lstrip(), reply.rstrip()):
        if shown.startswith(kept) and kept:
            lead = reply[: reply.index(kept)]
            trail = reply[len(lead) + len(kept) :]
            stripped = strip_tokens(model.tokenizer, reply_tokens, lead.encode(), trail.encode())
            return (kept, stripped) if stripped is not None else ("", [])
    return "", []


def strip_tokens(
    tokenizer: LlamaTokenizer, tokens: list[int], lead: bytes, trail: bytes
) -> list[int] | None:
    """``tokens`` (a reply's) without the whole tokens that spell ``lead`` and
    ``trail`` (None when a token straddles the edge)."""
    lstrip = 1 if tokenizer.add_space_prefix else 0
    pieces = [tokenizer.piece(t, lstrip=lstrip if k == 0 else 0) for k, t in enumerate(tokens)]
    start = got = 0
    while got < len(lead) and start < len(pieces):
        got += len(pieces[start])
        start += 1
    end, cut = len(pieces), 0
    while cut < len(trail) and end > start:
        end -= 1
        cut += len(pieces[end])
    if got != len(lead) or cut != len(trail):
        return None
    return tokens[start:end]
