"""Engine overhead benchmark: our worker process against a plain llama-cpp-python loop.

Run from the repository root::

    .venv/bin/python benchmarks/engine.py            # TinyLlama-1.1B shape, Q4_0
    .venv/bin/python benchmarks/engine.py --quick    # a tiny model, to try the script
    .venv/bin/python benchmarks/engine.py --model some.gguf --reps 5

What it measures, for one model and one set of settings in one run:

* **Prompt tokens/s.** Each repetition sends a prompt of about ``--prompt-tokens``
  tokens whose first user message starts with a tag unique to that repetition,
  so only the chat template's first few tokens can come from the KV cache. The
  speed is *evaluated tokens / time to first token*. Engine side: from the
  ``Engine.chat`` call to the first streamed piece arriving in this process (so
  it includes rendering, tokenizing and the pipe); ``ChatResult.evaluated_tokens``
  says how many prompt tokens the worker computed. Raw side: from the
  ``Llama.generate`` call to its first token, for the very same token ids; plain
  ``generate`` reuses the cached prefix the same way, and the benchmark counts
  what it evaluates with the same rule (both counts are printed).
* **Generated tokens/s.** The same request then generates ``--gen-tokens``
  tokens; the speed is *(tokens - 1) / (last token time - first token time)*,
  from what was actually produced (an end-of-generation token may stop a reply
  early). Engine side: parent-side wall clock from the first streamed piece to
  the last, which includes the pipe; the worker's own ``tokens_per_s`` is shown
  too. Raw side: each token is detokenized as it comes, as a streaming app
  would.
* **Cancel latency.** (a) During generation: after 20 streamed pieces another
  thread calls ``Engine.cancel()``; the latency is from that call to the end of
  the stream in the consuming thread. (b) During prompt evaluation: a fresh
  prompt of ~1500 tokens is sent and another thread cancels ~150 ms later (less
  when the whole prompt would take less than ~0.5 s); same latency. The finish
  reason and the number of tokens generated are reported for each.

Both sides use the same file and settings: context 2048, ``n_batch = n_ubatch =
512``, every usable core (``--threads``), CPU only, no flash attention, greedy
sampling (temperature 0, repeat penalty 1, fixed seed). Both models are loaded
at once (the weights are memory-mapped, so the page cache is shared) and the
two sides take turns, alternating which goes first, so that noise on a shared
machine falls on both; after an untimed warm-up each, medians are reported.

With every core in use, llama.cpp's threads wait on each other at each step, so
any other busy process (or a burst of one) slows a run by up to orders of
magnitude: run on an otherwise idle machine, and check the load averages
printed before and after (add ``--reps`` to outvote short bursts).

The default model is written once with random weights (speed does not depend
on the weights) into ``benchmarks/.cache/``. Goal: both ratios (engine / raw)
at least 0.97 and cancel latency at most 100 ms.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import llama_cpp

from localchat.core.engine.client import Engine
from localchat.core.engine.protocol import Message
from localchat.core.engine.worker.prompt_cache import reusable_prefix
from localchat.core.params import GenerationSettings
from localchat.testing.tiny_models import fixture_template, write_llama_gguf

CTX = 2048
N_BATCH = 512
SEED = 1234
CANCEL_AFTER_PIECES = 20
CANCEL_PROMPT_TOKENS = 1500
CANCEL_PROMPT_DELAY_S = 0.150
PROMPT_RATIO_GOAL = 0.97
GEN_RATIO_GOAL = 0.97
CANCEL_GOAL_MS = 100.0

CACHE_DIR = Path(__file__).resolve().parent / ".cache"

TINYLLAMA_SHAPE: dict[str, Any] = {
    "vocab": "llama-spm",
    "n_embd": 2048,
    "n_layer": 22,
    "n_head": 32,
    "n_head_kv": 4,
    "n_ff": 5632,
    "context_length": CTX,
}
QUICK_SHAPE: dict[str, Any] = {
    "vocab": "llama-spm",
    "n_embd": 256,
    "n_layer": 4,
    "n_head": 4,
    "n_head_kv": 2,
    "n_ff": 704,
    "context_length": CTX,
}

_WORDS = (
    "the quick brown fox jumps over a lazy dog while seven bright stars light the "
    "quiet valley river under old stone bridges where travellers rest and talk about "
    "distant cities markets music weather harvest stories of kings and clever merchants"
).split()

# ---------------------------------------------------------------------------------------------
# The model


def cached_model(shape: dict[str, Any]) -> Path:
    """A random-weight Q4_0 llama GGUF of ``shape``, written once and kept in the
    cache. ``shape["chat_template"]`` names a template in the shared fixtures."""
    key = "-".join(
        [
            "llama",
            shape["vocab"],
            f"e{shape['n_embd']}",
            f"l{shape['n_layer']}",
            f"h{shape['n_head']}",
            f"kv{shape['n_head_kv']}",
            f"ff{shape['n_ff']}",
            f"c{shape['context_length']}",
            "q4_0",
            *([shape["chat_template"].split("-")[1]] if "chat_template" in shape else []),
        ]
    )
    path = CACHE_DIR / f"{key}.gguf"
    if path.exists():
        return path
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    print(f"writing {path.name} (once; random weights) ...", flush=True)
    t0 = time.perf_counter()
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    try:
        template = shape.get("chat_template")
        write_llama_gguf(
            tmp,
            **{**shape, "chat_template": fixture_template(template) if template else "default"},
            qtype=gguf.GGMLQuantizationType.Q4_0,
            seed=0,
            name="bench-llama",
        )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    print(f"  written in {time.perf_counter() - t0:.0f} s", flush=True)
    return path


# ---------------------------------------------------------------------------------------------
# Prompts


def filler(n_words: int) -> str:
    rng = random.Random(0)
    return " ".join(rng.choice(_WORDS) for _ in range(n_words))


def user_message(tag: str, n_words: int) -> list[Message]:
    return [{"role": "user", "content": f"{tag}. Summarise this text: {filler(n_words)}"}]


def words_for(engine: Engine, target_tokens: int) -> int:
    """The most filler words that keep the rendered prompt within ``target_tokens``."""

    def size(n: int) -> int:
        return engine.render(user_message("Run 0", n)).n_tokens

    base, probe = size(0), max(1, target_tokens)
    n = max(0, round((target_tokens - base) * probe / max(1, size(probe) - base)))
    while n > 0 and size(n) > target_tokens:
        n -= 1
    while size(n + 1) <= target_tokens:
        n += 1
    return n


@dataclass(frozen=True)
class Prompt:
    messages: list[Message]
    tokens: list[int]
    """The token ids the engine evaluates, for the raw side."""


def make_prompt(engine: Engine, llm: llama_cpp.Llama, tag: str, n_words: int) -> Prompt:
    """The engine's rendered prompt for these messages, tokenized exactly as the
    worker does (whether a BOS token is added is read off the worker's count)."""
    messages = user_message(tag, n_words)
    rendered = engine.render(messages)
    ids = llm.tokenize(rendered.text.encode(), add_bos=False, special=True)
    if len(ids) + 1 == rendered.n_tokens:
        ids = [llm.token_bos(), *ids]
    if len(ids) != rendered.n_tokens:
        raise RuntimeError(
            f"raw tokenization gives {len(ids)} tokens, the engine {rendered.n_tokens}"
        )
    return Prompt(messages, ids)


# ---------------------------------------------------------------------------------------------
# One measured request


@dataclass(frozen=True)
class Run:
    side: str
    evaluated: int
    ttft_s: float
    generated: int
    gen_s: float
    text: str
    worker_ttft_ms: float | None = None
    worker_tok_s: float | None = None

    @property
    def prompt_tok_s(self) -> float:
        return self.evaluated / self.ttft_s

    @property
    def gen_tok_s(self) -> float:
        return (self.generated - 1) / self.gen_s if self.generated > 1 and self.gen_s > 0 else 0.0


def run_raw(llm: llama_cpp.Llama, prompt: Prompt, n_gen: int, sampling: dict[str, Any]) -> Run:
    """The plain in-process loop: ``Llama.generate``, detokenizing each token."""
    tokens = prompt.tokens
    # What plain ``generate`` will take from the KV cache: the same rule as ours.
    prefix = reusable_prefix(llm.input_ids[: llm.n_tokens].tolist(), tokens)
    eos = llm.token_eos()
    llm.set_seed(SEED)
    pieces: list[bytes] = []
    n = 0
    t_first = t_last = 0.0
    t0 = time.perf_counter()
    for token in llm.generate(tokens, **sampling):
        if token == eos:
            t_first = t_first or time.perf_counter()
            break
        pieces.append(llm.detokenize([token]))
        n += 1
        t_last = time.perf_counter()
        t_first = t_first or t_last
        if n >= n_gen:
            break
    text = b"".join(pieces).decode("utf-8", errors="replace")
    return Run("raw", len(tokens) - prefix, t_first - t0, n, t_last - t_first, text)


def run_engine(engine: Engine, prompt: Prompt, settings: GenerationSettings) -> Run:
    """The same request through the worker process, timed in this process."""
    t_first = t_last = 0.0
    t0 = time.perf_counter()
    stream = engine.chat(prompt.messages, settings)
    for _piece in stream:
        t_last = time.perf_counter()
        t_first = t_first or t_last
    t_first = t_first or time.perf_counter()  # no text at all: the reply ended at once
    r = stream.result
    assert r is not None
    return Run(
        "engine",
        r.evaluated_tokens,
        t_first - t0,
        r.completion_tokens,
        t_last - t_first,
        r.reply,
        worker_ttft_ms=r.ttft_ms,
        worker_tok_s=r.tokens_per_s,
    )


# ---------------------------------------------------------------------------------------------
# Cancel latency


@dataclass(frozen=True)
class Cancelled:
    latency_ms: float
    """From the ``cancel()`` call to the end of the stream; NaN if the reply ended first."""
    finish_reason: str
    completion_tokens: int
    evaluated_tokens: int


def measure_cancel(
    engine: Engine,
    messages: list[Message],
    settings: GenerationSettings,
    *,
    after_pieces: int | None = None,
    after_s: float | None = None,
) -> Cancelled:
    """Stream a reply while another thread calls ``engine.cancel()`` once
    ``after_pieces`` pieces have arrived or ``after_s`` seconds after sending."""
    reached = threading.Event()
    cancelled_at: list[float] = []

    def canceller() -> None:
        reached.wait(after_s)
        cancelled_at.append(time.perf_counter())
        engine.cancel()

    thread = threading.Thread(target=canceller, daemon=True)
    stream = engine.chat(messages, settings)
    thread.start()
    for n, _piece in enumerate(stream, 1):
        if n == after_pieces:
            reached.set()
    t_end = time.perf_counter()
    reached.set()  # a reply that ended on its own: let the thread finish
    thread.join()
    r = stream.result
    assert r is not None
    latency = (t_end - cancelled_at[0]) * 1000
    if r.finish_reason != "cancelled" or latency < 0:
        latency = float("nan")
    return Cancelled(latency, r.finish_reason, r.completion_tokens, r.evaluated_tokens)


# ---------------------------------------------------------------------------------------------
# Report


def measured(latencies: list[Cancelled]) -> list[float]:
    """The latencies of the requests that were cancelled (not those that ended first)."""
    return [c.latency_ms for c in latencies if not math.isnan(c.latency_ms)]


def fmt_ms(values: list[float], n: int) -> str:
    if not values:
        return f"none of {n} requests was cancelled"
    return (
        f"median {statistics.median(values):6.1f} ms, max {max(values):6.1f} ms "
        f"({len(values)}/{n} cancelled)"
    )


def summary_ms(values: list[float], pick: Callable[[list[float]], float]) -> str:
    return f"{pick(values):.0f}" if values else "n/a"


def print_runs(runs: list[tuple[int, Run]]) -> None:
    header = (
        f"{'rep':>3}  {'side':<6}  {'eval tok':>8}  {'ttft ms':>9}  {'prompt tok/s':>12}  "
        f"{'gen tok':>7}  {'gen tok/s':>9}  worker (ttft ms, gen tok/s)"
    )
    print(header)
    print("-" * len(header))
    for rep, r in runs:
        worker = ""
        if r.worker_ttft_ms is not None and r.worker_tok_s is not None:
            worker = f"{r.worker_ttft_ms:9.1f}, {r.worker_tok_s:8.2f}"
        print(
            f"{rep:>3}  {r.side:<6}  {r.evaluated:>8}  {r.ttft_s * 1000:>9.1f}  "
            f"{r.prompt_tok_s:>12.2f}  {r.generated:>7}  {r.gen_tok_s:>9.2f}  {worker}"
        )


def load_average() -> str:
    """The 1-minute load average: above 0 or so before the run, the numbers are noise."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except (AttributeError, OSError):
        return "n/a"


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT MET"


# ---------------------------------------------------------------------------------------------
# Main


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Engine (worker process, streaming) against plain llama-cpp-python: "
        "prompt and generation speed ratios, and cancel latency."
    )
    p.add_argument("--quick", action="store_true", help="a tiny model, to try the script")
    p.add_argument("--model", type=Path, help="use this GGUF instead of writing one")
    p.add_argument("--reps", type=int, default=3, help="measured repetitions per side (3)")
    p.add_argument("--gen-tokens", type=int, default=128, help="tokens to generate (128)")
    p.add_argument("--prompt-tokens", type=int, default=500, help="prompt length (500)")
    p.add_argument(
        "--threads", type=int, default=usable_cores(), help="CPU threads (all usable cores)"
    )
    p.add_argument("--cancel-reps", type=int, default=3, help="repetitions per cancel test (3)")
    args = p.parse_args(argv)
    if args.reps < 1 or args.cancel_reps < 1 or args.threads < 1 or args.gen_tokens < 2:
        p.error("--reps, --cancel-reps and --threads must be >= 1, --gen-tokens >= 2")
    if args.prompt_tokens + args.gen_tokens + 16 > CTX:
        p.error(f"--prompt-tokens + --gen-tokens must leave room in the {CTX}-token context")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model = args.model or cached_model(QUICK_SHAPE if args.quick else TINYLLAMA_SHAPE)
    threads: int = args.threads
    settings = GenerationSettings(
        ctx=CTX,
        threads=threads,
        gpu_layers=0,
        temperature=0.0,
        repeat_penalty=1.0,
        seed=SEED,
        max_tokens=args.gen_tokens,
    )
    sampling = {
        **{k: v for k, v in settings.llama_args("sampling").items() if k != "seed"},
        "typical_p": 1.0,
        "frequency_penalty": 0.0,
        "presence_penalty": 0.0,
        "tfs_z": 1.0,
        "mirostat_mode": 0,
    }

    print(f"model    {model} ({model.stat().st_size / 2**20:.0f} MiB)")
    print(
        f"settings ctx {CTX}, n_batch {N_BATCH}, threads {threads}, CPU only, greedy, "
        f"repeat penalty 1.0, seed {SEED}"
    )
    print(f"llama-cpp-python {llama_cpp.__version__}; load average {load_average()}", flush=True)

    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with Engine(log_path=CACHE_DIR / "engine.log") as engine:
        t0 = time.perf_counter()
        loaded = engine.load(model, settings)
        load_engine = time.perf_counter() - t0
        t0 = time.perf_counter()
        llm = llama_cpp.Llama(
            model_path=str(model),
            n_ctx=CTX,
            n_batch=N_BATCH,
            n_ubatch=N_BATCH,
            n_threads=threads,
            n_threads_batch=threads,
            n_gpu_layers=0,
            flash_attn=False,
            verbose=False,
        )
        load_raw = time.perf_counter() - t0
        if loaded.n_ctx != llm.n_ctx() or loaded.threads != threads or loaded.gpu_layers != 0:
            raise RuntimeError(f"the engine loaded with other settings: {loaded}")
        print(f"load     engine {load_engine:.2f} s, raw {load_raw:.2f} s")

        n_words = words_for(engine, args.prompt_tokens)

        # Warm-up at full prompt size (page in the weights, size the buffers), untimed.
        warm = make_prompt(engine, llm, "Warm-up", n_words)
        run_raw(llm, warm, 8, sampling)
        run_engine(engine, warm, settings.replace(max_tokens=8))

        print(
            f"\nspeed    prompt ~{args.prompt_tokens} tokens, {args.gen_tokens} generated, "
            f"{args.reps} reps (median)\n",
            flush=True,
        )
        runs: list[tuple[int, Run]] = []
        for rep in range(1, args.reps + 1):
            prompt = make_prompt(engine, llm, f"Run {rep}", n_words)
            order = ("raw", "engine") if rep % 2 else ("engine", "raw")
            for side in order:
                if side == "raw":
                    run = run_raw(llm, prompt, args.gen_tokens, sampling)
                else:
                    run = run_engine(engine, prompt, settings)
                runs.append((rep, run))
        print_runs(runs)

        raw = [r for _, r in runs if r.side == "raw"]
        eng = [r for _, r in runs if r.side == "engine"]
        raw_prompt = statistics.median(r.prompt_tok_s for r in raw)
        eng_prompt = statistics.median(r.prompt_tok_s for r in eng)
        raw_gen = statistics.median(r.gen_tok_s for r in raw)
        eng_gen = statistics.median(r.gen_tok_s for r in eng)
        prompt_ratio = eng_prompt / raw_prompt
        gen_ratio = eng_gen / raw_gen if raw_gen else 0.0
        same = sum(a.text.lstrip(" ") == b.text.lstrip(" ") for a, b in zip(raw, eng, strict=True))
        print(
            f"\nmedian   raw    prompt {raw_prompt:9.2f} tok/s   gen {raw_gen:8.2f} tok/s"
            f"\nmedian   engine prompt {eng_prompt:9.2f} tok/s   gen {eng_gen:8.2f} tok/s"
            f"\nsame greedy reply on both sides: {same}/{len(raw)} reps"
        )
        ttft_extra = statistics.median(e.ttft_s - r.ttft_s for r, e in zip(raw, eng, strict=True))
        token_extra = 1 / eng_gen - 1 / raw_gen if eng_gen and raw_gen else float("nan")
        print(
            f"engine overhead: {ttft_extra * 1000:+.1f} ms to first token, "
            f"{token_extra * 1000:+.2f} ms per generated token (medians)"
        )
        print(f"\nprompt ratio (engine/raw):     {prompt_ratio:.3f}")
        print(f"generation ratio (engine/raw): {gen_ratio:.3f}", flush=True)

        # Cancel during generation.
        print(f"\ncancel   during generation (after {CANCEL_AFTER_PIECES} pieces)", flush=True)
        gen_cancels: list[Cancelled] = []
        long_reply = settings.replace(max_tokens=CTX)
        for i in range(1, args.cancel_reps + 1):
            msgs = user_message(f"Story {i}", 8)
            gen_cancels.append(
                measure_cancel(engine, msgs, long_reply, after_pieces=CANCEL_AFTER_PIECES)
            )
        for c in gen_cancels:
            print(
                f"  {c.latency_ms:7.1f} ms  finish={c.finish_reason}  "
                f"completion_tokens={c.completion_tokens}"
            )

        # Cancel during prompt evaluation.
        cancel_words = words_for(engine, CANCEL_PROMPT_TOKENS)
        expected_s = CANCEL_PROMPT_TOKENS / raw_prompt
        delay = min(CANCEL_PROMPT_DELAY_S, 0.3 * expected_s)
        print(
            f"\ncancel   during prompt evaluation (~{CANCEL_PROMPT_TOKENS} tokens, about "
            f"{expected_s * 1000:.0f} ms to evaluate; cancel after {delay * 1000:.0f} ms)",
            flush=True,
        )
        prompt_cancels: list[Cancelled] = []
        for i in range(1, args.cancel_reps + 1):
            msgs = user_message(f"Cancel {i}", cancel_words)
            prompt_cancels.append(measure_cancel(engine, msgs, long_reply, after_s=delay))
        for c in prompt_cancels:
            phase = "in prompt" if c.completion_tokens == 0 else "AFTER the prompt"
            print(
                f"  {c.latency_ms:7.1f} ms  finish={c.finish_reason}  "
                f"completion_tokens={c.completion_tokens}  ({phase}; "
                f"prompt tokens evaluated {c.evaluated_tokens})"
            )
        llm.close()

    gen_ms, prompt_ms = measured(gen_cancels), measured(prompt_cancels)
    print(f"\nload average after the run {load_average()} ({usable_cores()} usable cores)")
    print(f"\ncancel latency during generation: {fmt_ms(gen_ms, len(gen_cancels))}")
    print(f"cancel latency during prompt:     {fmt_ms(prompt_ms, len(prompt_cancels))}")
    all_cancelled = len(gen_ms) == len(gen_cancels) and len(prompt_ms) == len(prompt_cancels)
    cancel_ok = all_cancelled and max(gen_ms + prompt_ms) <= CANCEL_GOAL_MS
    print(
        f"\nSUMMARY prompt_ratio={prompt_ratio:.3f} gen_ratio={gen_ratio:.3f} "
        f"cancel_gen_ms={summary_ms(gen_ms, statistics.median)} "
        f"cancel_prompt_ms={summary_ms(prompt_ms, statistics.median)} "
        f"cancel_max_ms={summary_ms(gen_ms + prompt_ms, max)}"
    )
    print(
        f"goals: prompt ratio >= {PROMPT_RATIO_GOAL}: {verdict(prompt_ratio >= PROMPT_RATIO_GOAL)}"
        f"; generation ratio >= {GEN_RATIO_GOAL}: {verdict(gen_ratio >= GEN_RATIO_GOAL)}"
        f"; cancel <= {CANCEL_GOAL_MS:.0f} ms (max, all cancelled): {verdict(cancel_ok)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
