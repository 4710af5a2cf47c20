"""Context benchmark: a long conversation through a full window, turn by turn.

Run from the repository root::

    .venv/bin/python benchmarks/context.py            # Llama 3.2 1B shape, Q4_0
    .venv/bin/python benchmarks/context.py --quick    # a tiny model, to try the script

A 60-turn conversation at context 2048 (system prompt, ~80-token user messages,
40-token replies, greedy) whose history outgrows the window around turn 15.
For each turn it prints the whole prompt's tokens, the tokens the engine
actually evaluated, the messages out of view, the tokens shifted out of the KV
cache, and the time to first token (from ``Engine.chat`` to the first piece
arriving in this process).

References, from the same run: llama-cpp-python alone evaluating as many new
tokens after as many cached ones as turn 2 and the last turn had (attention
reads the whole cache, so a fuller cache costs more even with nothing
re-read), and what re-reading the whole prompt would cost (the prompt's tokens
at the prompt speed of turn 1, which evaluates everything).

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
from localchat.core.engine.protocol import Message
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
        f"{args.reply_tokens} tokens, user messages of {args.words} words, overflow rolling"
    )
    print(f"load     {os.getloadavg()[0]:.2f} (1 min average)")
    print()
    print("turn  prompt  evaluated  out-of-view  shifted  ttft_ms  re-read_ms (estimate)")

    rows: list[tuple[int, int, int, int, int, float, float]] = []
    messages: list[Message] = []
    speed = 0.0  # prompt tokens/ms, from turn 1
    with Engine() as engine:
        engine.load(model, s)
        for turn in range(1, args.turns + 1):
            text = f"Question {turn}: {filler(args.words + turn % 5)}"
            messages.append({"role": "user", "content": text})
            stream = engine.chat(messages, s)
            reply = stream.text()
            r = stream.result
            assert r is not None
            if turn == 1:
                speed = r.evaluated_tokens / r.ttft_ms
            reread = r.prompt_tokens / speed
            row = (
                turn,
                r.prompt_tokens,
                r.evaluated_tokens,
                r.trimmed_messages,
                r.shifted_tokens,
                r.ttft_ms,
                reread,
            )
            rows.append(row)
            print(
                f"{turn:4d}  {row[1]:6d}  {row[2]:9d}  {row[3]:11d}  {row[4]:7d}  "
                f"{row[5]:7.0f}  {row[6]:10.0f}",
                flush=True,
            )
            messages.append({"role": "assistant", "content": reply})

    # The reference: llama.cpp itself evaluating as many new tokens after as
    # many cached ones as turn 2 and the last turn had. Attention reads the
    # whole cache, so even with nothing re-read a fuller cache costs more.
    last = rows[-1]
    raw2, raw_last = raw_eval_ms(
        model,
        args.threads,
        cached=(rows[1][1] - rows[1][2], last[1] - last[2]),
        new=(rows[1][2], last[2]),
    )
    full = [r for r in rows if r[3] > 0]
    print()
    if not full:
        print("the window never filled: raise --turns or --words")
        return 1
    turn2 = rows[1]
    print(
        f"window full from turn {full[0][0]}; the cache moved on {sum(1 for r in full if r[4])} "
        f"of the {len(full)} turns after"
    )
    evaluated_after = statistics.median(r[2] for r in full)
    print(
        f"evaluated tokens: turn 2 {turn2[2]}, median once full {evaluated_after:.0f} "
        f"(prompt once full: median {statistics.median(r[1] for r in full):.0f})"
    )
    ratio = rows[-1][5] / turn2[5]
    last3 = statistics.median(r[5] for r in rows[-3:]) / turn2[5]
    print(
        f"ttft: turn 2 {turn2[5]:.0f} ms, turn {rows[-1][0]} {rows[-1][5]:.0f} ms: "
        f"ratio {ratio:.2f} (median of the last 3: {last3:.2f}; goal <= {TTFT_GOAL})"
    )
    print(
        f"llama.cpp alone, the same new tokens after as many cached ones: turn 2 {raw2:.0f} ms, "
        f"turn {last[0]} {raw_last:.0f} ms: ratio {raw_last / raw2:.2f} (a fuller cache's cost)"
    )
    print(
        f"our ttft over llama.cpp's: turn 2 {turn2[5] / raw2:.2f}, "
        f"turn {last[0]} {last[5] / raw_last:.2f}"
    )
    print(
        f"re-reading the prompt instead would take ~{rows[-1][6]:.0f} ms at turn {rows[-1][0]} "
        f"({rows[-1][6] / turn2[5]:.1f}x turn 2)"
    )
    print(f"load     {os.getloadavg()[0]:.2f} (1 min average)")
    return 0


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
