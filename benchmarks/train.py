"""Training benchmark: our training loop against a minimal PyTorch loop.

Run from the repository root::

    .venv/bin/python benchmarks/train.py               # the 'mini' preset, 60 steps a round
    .venv/bin/python benchmarks/train.py --preset tiny --steps 200

Both train the same model (same preset, same initial weights, vocabulary 2048)
with the same batch size and AdamW, on the same token stream, in alternating
rounds in this process:

- reference: batches cut from the stream by plain tensor indexing, then
  forward, backward, clipping, step; nothing else;
- ours: ``trainer.train``: its per-step batch generator (seeded by the step,
  which is what makes resuming exact), learning-rate schedule, progress
  events (written as JSON lines, as ``--json`` does), a checkpoint every
  ``--checkpoint-every`` steps (atomic: a temporary file and a rename), and
  its end-of-run held-out evaluation on a few windows.

It prints the median tokens/s of each and their ratio (goal: ours costs
<= 5%, a ratio >= 0.95).
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from localchat.core.trainer import train as tr
from localchat.core.trainer.model import GPT, PRESETS, Config

VOCAB = 2048


def reference(cfg: Config, stream: np.ndarray, steps: int, batch: int, lr: float) -> float:
    torch.manual_seed(0)
    model = GPT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    data = torch.from_numpy(stream)
    starts = torch.randint(0, len(stream) - cfg.n_ctx - 1, (steps, batch))
    offsets = torch.arange(cfg.n_ctx + 1)
    start = time.perf_counter()
    for step in range(steps):
        x = data[starts[step][:, None] + offsets]
        loss = model.loss(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return steps * batch * cfg.n_ctx / (time.perf_counter() - start)


def ours(
    cfg: Config, stream: np.ndarray, steps: int, batch: int, lr: float, every: int, folder: Path
) -> float:
    from localchat.core.trainer.tokenizer import Tokenizer

    settings = tr.TrainSettings(
        steps=steps,
        batch=batch,
        lr=lr,
        warmup=max(steps // 20, 1),
        eval_every=steps,
        eval_windows=4,
        checkpoint_every=every,
    )
    run = tr.new_run(cfg, settings, Tokenizer(_TOKENIZER))
    sink = io.StringIO()
    start = time.perf_counter()
    tr.train(
        run,
        stream,
        stream[: 8 * (cfg.n_ctx + 1)],
        checkpoint=folder / "bench.ckpt",
        on_progress=lambda p: sink.write(p.to_json() + "\n"),
    )
    return steps * batch * cfg.n_ctx / (time.perf_counter() - start)


_TOKENIZER = ""


def main() -> int:
    global _TOKENIZER
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="mini", choices=sorted(PRESETS))
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--checkpoint-every", type=int, default=20)
    args = parser.parse_args()
    from localchat.core.trainer.tokenizer import train_bpe

    # A real tokenizer for the checkpoints (they carry it), on a little text.
    _TOKENIZER = train_bpe(["the quick brown fox jumps over the lazy dog"] * 50, 300).json_text
    cfg = Config(vocab_size=VOCAB, **PRESETS[args.preset])
    stream = np.random.default_rng(0).integers(0, VOCAB, 200_000, dtype=np.int64)
    refs: list[float] = []
    mine: list[float] = []
    with tempfile.TemporaryDirectory(prefix="localchat-bench-") as tmp:
        reference(cfg, stream, 3, args.batch, 3e-3)  # warm-up
        for _ in range(args.rounds):
            refs.append(reference(cfg, stream, args.steps, args.batch, 3e-3))
            mine.append(
                ours(cfg, stream, args.steps, args.batch, 3e-3, args.checkpoint_every, Path(tmp))
            )
    ref, our = statistics.median(refs), statistics.median(mine)
    print(
        f"preset {args.preset} ({sum(p.numel() for p in GPT(cfg).parameters()):,} parameters), "
        f"batch {args.batch} x {cfg.n_ctx} tokens, {args.steps} steps a round, "
        f"{args.rounds} rounds, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"minimal PyTorch loop:  {ref:10,.0f} tokens/s")
    print(
        f"localchat trainer:     {our:10,.0f} tokens/s  (checkpoint every "
        f"{args.checkpoint_every} steps, JSON progress, final held-out loss)"
    )
    rounds = ", ".join(f"{m / r:.3f}" for m, r in zip(mine, refs, strict=True))
    print(f"ratio ours / minimal:  {our / ref:10.3f}   (goal >= 0.95); rounds: {rounds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
