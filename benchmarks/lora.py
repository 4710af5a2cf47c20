"""LoRA fine-tuning benchmark: our loop against a minimal PyTorch loop, and
the memory a run takes against the estimate shown before it starts.

Run from the repository root::

    .venv/bin/python benchmarks/lora.py                 # 'medium': ~60M parameters
    .venv/bin/python benchmarks/lora.py --size small --steps 20

The base is a random-weight llama model written as GGUF with Llama 2's
SentencePiece vocabulary (32,000 tokens, so the output layer costs what it
does in a real model), read back with ``base.load`` as a fine-tune reads it.

**Speed.** Both loops train the same base with the same adapters (rank 16 on
all seven matrices, the same initial weights), the same batches of
``--ctx`` tokens, AdamW, in alternating rounds in this process:

- reference: the batch as a tensor, forward to the logits at every
  position, cross-entropy, backward, step; nothing else;
- ours: ``finetune.train``: the batch built from examples with their
  learned-token masks, the output layer run only where tokens are learned,
  the learning-rate schedule, gradient clipping, progress events, and its
  held-out evaluation (outside the timed steps, as the tokens/s it reports).

It prints the median tokens/s of each and their ratio (goal: >= 0.95).

**Memory.** A fresh process runs ``finetune.train`` for a few steps and
reports its peak resident memory; the ratio to ``finetune.estimate`` for the
same run is printed (goal: within 20%, 0.8 to 1.2). Run it for several
shapes with ``--memory-only --batch N --ctx N``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from localchat.core.trainer import base as base_mod
from localchat.core.trainer import finetune as ft
from localchat.core.trainer import lora as lora_mod
from localchat.core.trainer.chat_data import Example
from localchat.testing.tiny_models import write_llama_gguf

SIZES = {
    "small": {"n_embd": 256, "n_layer": 4, "n_head": 4, "n_head_kv": 2, "n_ff": 704},
    "medium": {"n_embd": 512, "n_layer": 8, "n_head": 8, "n_head_kv": 4, "n_ff": 1408},
    "large": {"n_embd": 1024, "n_layer": 12, "n_head": 16, "n_head_kv": 8, "n_ff": 2816},
}
LORA = lora_mod.LoRASettings(rank=16, alpha=32.0, dropout=0.0)


def examples(n: int, ctx: int, vocab: int, seed: int) -> list[Example]:
    rng = np.random.default_rng(seed)
    return [
        Example([1, *rng.integers(5, vocab, ctx - 1).tolist()], [False] + [True] * (ctx - 1))
        for _ in range(n)
    ]


def fresh(path: Path, ctx: int) -> tuple[base_mod.BaseModel, dict[str, lora_mod.LoRALinear]]:
    base = base_mod.load(path, n_ctx=ctx)
    torch.manual_seed(0)
    return base, lora_mod.inject(base.model, LORA)


def reference(path: Path, data: list[Example], steps: int, batch: int, ctx: int) -> float:
    base, layers = fresh(path, ctx)
    model = base.model
    model.train()
    opt = torch.optim.AdamW(lora_mod.lora_parameters(layers), lr=2e-4)
    tokens = torch.tensor([e.tokens for e in data])
    start = time.perf_counter()
    for step in range(steps):
        x = tokens[(step * batch + torch.arange(batch)) % len(data)]
        logits = model(x[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * batch * (ctx - 1) / (time.perf_counter() - start)


def ours(path: Path, data: list[Example], steps: int, batch: int, ctx: int) -> float:
    base = base_mod.load(path, n_ctx=ctx)
    settings = ft.FinetuneSettings(
        ctx=ctx, batch=batch, steps=steps, lr=2e-4, eval_every=10**9, eval_examples=2
    )
    dataset = ft.Dataset(data, data[:2], {}, "benchmark")
    torch.manual_seed(0)
    run = ft.new_run(base, LORA, settings, dataset)
    speeds: list[float] = []
    ft.train(run, dataset, on_progress=lambda p: speeds.append(p.tokens_per_s))
    return speeds[-1]


def memory_child(path: Path, steps: int, batch: int, ctx: int) -> None:
    """In a fresh process: train, then report the peak RSS and the estimate."""
    base = base_mod.load(path, n_ctx=ctx)
    settings = ft.FinetuneSettings(ctx=ctx, batch=batch, steps=steps, eval_every=10**9)
    vocab = base.config.vocab_size
    dataset = ft.Dataset(examples(8 * batch, ctx, vocab, 0), examples(2, ctx, vocab, 1), {}, "m")
    run = ft.new_run(base, LORA, settings, dataset)
    ft.train(run, dataset)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    need = ft.estimate(base.config, base.n_params, LORA, settings)
    print(json.dumps({"peak": peak, "estimate": need.total, "parts": need.__dict__}))


def measure_memory(path: Path, steps: int, batch: int, ctx: int) -> dict[str, object]:
    args = [sys.executable, __file__, "--child", str(path), "--steps", str(steps)]
    args += ["--batch", str(batch), "--ctx", str(ctx)]
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=SIZES, default="medium")
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--ctx", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory-only", action="store_true")
    parser.add_argument("--child", metavar="MODEL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        memory_child(Path(args.child), args.steps, args.batch, args.ctx)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = write_llama_gguf(
            Path(tmp) / "base.gguf", vocab="llama-spm", context_length=4096, **SIZES[args.size]
        )
        base = base_mod.load(path, n_ctx=args.ctx)
        print(
            f"base: {args.size}, {base.n_params / 1e6:.0f}M parameters, vocabulary "
            f"{base.config.vocab_size:,}; LoRA rank {LORA.rank} on {','.join(LORA.targets)}; "
            f"batch {args.batch} x {args.ctx} tokens; {torch.get_num_threads()} threads"
        )
        if not args.memory_only:
            data = examples(4 * args.batch, args.ctx, base.config.vocab_size, 0)
            refs, mine = [], []
            for _ in range(args.rounds):
                refs.append(reference(path, data, args.steps, args.batch, args.ctx))
                mine.append(ours(path, data, args.steps, args.batch, args.ctx))
            ref, our = statistics.median(refs), statistics.median(mine)
            print(f"reference loop  {ref:10,.0f} tokens/s  (rounds: {_fmt(refs)})")
            print(f"ours            {our:10,.0f} tokens/s  (rounds: {_fmt(mine)})")
            print(f"ratio           {our / ref:.3f}   (goal >= 0.95)")
        result = measure_memory(path, min(args.steps, 5), args.batch, args.ctx)
        peak, need = int(result["peak"]), int(result["estimate"])  # type: ignore[call-overload]
        print(
            f"peak memory {peak / 2**20:,.0f} MiB, estimated {need / 2**20:,.0f} MiB: "
            f"ratio {peak / need:.2f}   (goal 0.8 to 1.2)"
        )


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:,.0f}" for v in values)


if __name__ == "__main__":
    main()
