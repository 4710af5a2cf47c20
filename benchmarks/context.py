"""Context benchmark: a long conversation through a full window, turn by turn.

Run from the repository root::

    .venv/bin/python benchmarks/context.py            # Llama 3.2 1B shape, Q4_0
    .venv/bin/python benchmarks/context.py --quick    # a tiny model, to try the script

A 60-turn conversation at context 2048 (system prompt, ~80-token user messages,
40-token replies, greedy) whose history outgrows the window around turn 15.
Between a reply and the next message it waits ``--pause`` seconds (2) for a
person reading the reply and typing the next message (who takes far longer);
meanwhile the engine evaluates the start of the next prompt. For each turn it
prints the whole prompt's tokens, the tokens evaluated for it (and how many of
those were evaluated ahead, during the pause), the messages out of view, the
tokens shifted out of the KV cache, and the time to first token (from
``Engine.chat`` to the first piece arriving in this process). Turn 2, the
yardstick, is also timed in two short chats before, and their median taken: a
single time to first token is at the mercy of the machine's noise.

References, from the same run: llama-cpp-python alone evaluating as many
tokens as the requests of turn 2 and of the last turn evaluated, after as many
cached ones (attention reads the whole cache, so a fuller cache costs more
even with nothing re-read), and what re-reading the whole prompt would cost
(the prompt's tokens at the prompt speed of turn 1).

Goals: once the window is full, a turn evaluates about what turn 2 did (its
new tokens and the template around them), and the time to first token of the
last turn is at most 1.3x that of turn 2.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from engine import QUICK_SHAPE, cached_model, filler  # benchmarks/engine.py

from localchat.core.engine.client import Engine
from localchat.core.engine.protocol import ChatResult, Message
from localchat.core.params import GenerationSettings

CTX = 2048
TTFT_GOAL = 1.3
# Llama 3.2 1B's shape, with Llama 3's tokenizer and the Llama 3.1 Instruct template.
LLAMA3_SHAPE: dict[str, Any] = {
    "vocab": "llama-bpe",
    "n_embd": 2048,
    "n_layer": 16,
    "n_head": 32,
    "n_head_kv": 8,
    "n_ff": 8192,
    "context_length": 8192,
    "chat_template": "meta-llama-Llama-3.1-8B-Instruct",
}
LLAMA3_QUICK = {**QUICK_SHAPE, "vocab": "llama-bpe", "chat_template": LLAMA3_SHAPE["chat_template"]}
SYSTEM = "You are a patient assistant. Answer briefly and plainly, and ask when unsure."


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, help="a GGUF model (default: Llama 3.2 1B shape)")
    p.add_argument("--quick", action="store_true", help="a tiny model, to try the script")
    p.add_argument("--turns", type=int, default=60)
    p.add_argument("--words", type=int, default=60, help="words per user message (60)")
    p.add_argument("--reply-tokens", type=int, default=40)
    p.add_argument(
        "--pause", type=float, default=2.0, help="seconds between a reply and the next message (2)"
    )
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = p.parse_args(argv)
    if args.turns < 3:
        p.error("--turns must be at least 3")
    model = args.model or cached_model(LLAMA3_QUICK if args.quick else LLAMA3_SHAPE)
    s = GenerationSettings(
        ctx=CTX,
        threads=args.threads,
        gpu_layers=0,
        temperature=0.0,
        repeat_penalty=1.0,
        seed=1234,
        max_tokens=args.reply_tokens,
        system_prompt=SYSTEM,
    )
    print(f"model    {model} ({model.stat().st_size / 2**20:.0f} MiB)")
    print(
        f"settings ctx {CTX}, {args.threads} threads, CPU only, greedy, replies of "
        f"{args.reply_tokens} tokens, user messages of {args.words} words, overflow rolling, "
        f"{args.pause:g} s between a reply and the next message"
    )
    print(f"load     {os.getloadavg()[0]:.2f} (1 min average)")
    print()
    print("turn  prompt  evaluated (ahead)  out-of-view  shifted  ttft_ms  re-read_ms (estimate)")

    # turn, prompt, evaluated, ahead, out of view, shifted, ttft ms, re-read ms
    rows: list[tuple[int, int, int, int, int, int, float, float]] = []
    messages: list[Message] = []
    speed = 0.0  # prompt tokens/ms, from turn 1
    with Engine() as engine:
        engine.load(model, s)
        # Turn 2, the yardstick, once more in each of two short chats first (a
        # single time to first token is at the mercy of the machine's noise).
        turn2_ms = []
        for k in range(2):
            opening: list[Message] = [{"role": "user", "content": f"Hello {k}. {filler(60)}"}]
            reply, _, _ = chat_turn(engine, opening, s)
            time.sleep(args.pause)
            follow: Message = {"role": "user", "content": f"Question 2: {filler(args.words + 2)}"}
            turn2_ms.append(
                chat_turn(engine, [*opening, {"role": "assistant", "content": reply}, follow], s)[2]
            )
        for turn in range(1, args.turns + 1):
            if turn > 1:
                time.sleep(args.pause)
            text = f"Question {turn}: {filler(args.words + turn % 5)}"
            messages.append({"role": "user", "content": text})
            reply, r, ttft = chat_turn(engine, messages, s)
            if turn == 1:
                speed = r.evaluated_tokens / ttft
            reread = r.prompt_tokens / speed
            row = (
                turn,
                r.prompt_tokens,
                r.evaluated_tokens,
                r.ahead_tokens,
                r.trimmed_messages,
                r.shifted_tokens,
                ttft,
                reread,
            )
            rows.append(row)
            print(
                f"{turn:4d}  {row[1]:6d}  {row[2]:9d} {f'({row[3]})':>7}  {row[4]:11d}  "
                f"{row[5]:7d}  {row[6]:7.0f}  {row[7]:10.0f}",
                flush=True,
            )
            messages.append({"role": "assistant", "content": reply})

    # The reference: llama.cpp itself evaluating as many new tokens after as
    # many cached ones as turn 2 and the last turn had. Attention reads the
    # whole cache, so even with nothing re-read a fuller cache costs more.
    last, turn2 = rows[-1], rows[1]
    new2, new_last = turn2[2] - turn2[3], last[2] - last[3]  # evaluated by the request
    raw2, raw_last = raw_eval_ms(
        model,
        args.threads,
        cached=(turn2[1] - new2, last[1] - new_last),
        new=(new2, new_last),
    )
    full = [r for r in rows if r[4] > 0]
    print()
    if not full:
        print("the window never filled: raise --turns or --words")
        return 1
    print(
        f"window full from turn {full[0][0]}; the cache moved on {sum(1 for r in full if r[5])} "
        f"of the {len(full)} turns after"
    )
    print(
        f"evaluated tokens: turn 2 {turn2[2]} ({turn2[3]} ahead), median once full "
        f"{statistics.median(r[2] for r in full):.0f} "
        f"({statistics.median(r[3] for r in full):.0f} ahead; prompt once full: median "
        f"{statistics.median(r[1] for r in full):.0f})"
    )
    yardstick = statistics.median([turn2[6], *turn2_ms])
    ratio = last[6] / yardstick
    last3 = statistics.median(r[6] for r in rows[-3:]) / yardstick
    print(
        f"ttft: turn 2 {turn2[6]:.0f} ms (in the two short chats: "
        f"{', '.join(f'{t:.0f}' for t in turn2_ms)}; median {yardstick:.0f}), "
        f"turn {last[0]} {last[6]:.0f} ms: ratio {ratio:.2f} "
        f"(the last 3 turns' median: {last3:.2f}; goal <= {TTFT_GOAL})"
    )
    print(
        f"llama.cpp alone, the same new tokens after as many cached ones: turn 2 {raw2:.0f} ms "
        f"({new2} after {turn2[1] - new2}), turn {last[0]} {raw_last:.0f} ms ({new_last} after "
        f"{last[1] - new_last}): ratio {raw_last / raw2:.2f} (a fuller cache's cost)"
    )
    print(
        f"our ttft over llama.cpp's: turn 2 {yardstick / raw2:.2f}, "
        f"turn {last[0]} {last[6] / raw_last:.2f}"
    )
    print(
        f"re-reading the prompt instead would take ~{last[7]:.0f} ms at turn {last[0]} "
        f"({last[7] / yardstick:.1f}x turn 2)"
    )
    print(f"load     {os.getloadavg()[0]:.2f} (1 min average)")
    return 0


def chat_turn(
    engine: Engine, messages: list[Message], s: GenerationSettings
) -> tuple[str, ChatResult, float]:
    """One turn: the reply, its result, and the time from ``Engine.chat`` to the
    first piece arriving here (ms)."""
    t0 = time.perf_counter()
    stream = engine.chat(messages, s)
    pieces = iter(stream)
    first = next(pieces, "")
    ttft = (time.perf_counter() - t0) * 1000
    reply = first + "".join(pieces)
    assert stream.result is not None
    return reply, stream.result, ttft


def raw_eval_ms(
    model: Path, threads: int, *, cached: tuple[int, int], new: tuple[int, int]
) -> tuple[float, float]:
    """Plain llama-cpp-python, same settings as the engine: the fastest of 3
    evaluations of ``new[k]`` tokens after ``cached[k]`` tokens, for k = 0, 1."""
    import random

    import llama_cpp

    llm = llama_cpp.Llama(
        str(model),
        n_ctx=CTX,
        n_batch=512,
        n_ubatch=512,
        n_threads=threads,
        n_threads_batch=threads,
        n_gpu_layers=0,
        flash_attn=False,
        verbose=False,
    )
    rng = random.Random(0)
    ids = [rng.randrange(1000, min(llm.n_vocab(), 30000)) for _ in range(CTX)]
    out = []
    for fill, count in zip(cached, new, strict=True):
        best = float("inf")
        for _ in range(3):
            llm.reset()
            llm._ctx.kv_cache_clear()
            llm.eval(ids[:fill])
            t = time.perf_counter()
            llm.eval(ids[fill : fill + count])
            best = min(best, (time.perf_counter() - t) * 1000)
        out.append(best)
    llm.close()
    return out[0], out[1]


if __name__ == "__main__":
    sys.exit(main())
