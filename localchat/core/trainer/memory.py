"""How much memory a LoRA fine-tune needs, and where it runs (CPU or GPU, float32 or bfloat16).

:func:`estimate` adds up what a run holds at its peak: the frozen weights,
the adapter with its gradients and AdamW's state, the activations kept for
the backward pass, the logits. :func:`plan` picks the device and the dtype
(float32 when that fits in the free memory, else bfloat16) or refuses the
run in one line when even that does not fit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import torch

from localchat.core import hardware
from localchat.core.trainer import base as base_mod
from localchat.core.trainer.model import Config
from localchat.core.trainer.settings import FinetuneSettings, LoRASettings, TrainError

GB = 1024**3


@dataclass(frozen=True)
class Estimate:
    """What a run needs, in bytes."""

    weights: int
    adapter: int
    activations: int
    logits: int
    runtime: int
    dtype: str
    device: str

    @property
    def total(self) -> int:
        return self.weights + self.adapter + self.activations + self.logits + self.runtime

    def describe(self) -> str:
        return (
            f"{self.total / GB:.1f} GB ({self.weights / GB:.1f} GB of {self.dtype} weights, "
            f"{(self.activations + self.logits) / GB:.1f} GB of activations)"
        )


RUNTIME_BYTES = 380 << 20
"""Python, PyTorch and the data, measured on a small run (benchmarks/lora.py)."""


def lora_parameter_count(config: Config, lora: LoRASettings) -> int:
    e, f = config.n_embd, config.n_ff
    width, kv = config.n_head * config.head_dim, config.n_head_kv * config.head_dim
    shapes = {"q": (e, width), "k": (e, kv), "v": (e, kv), "o": (width, e)}
    shapes |= {"gate": (e, f), "up": (e, f), "down": (f, e)}
    per_layer = sum(lora.rank * (i + o) for t, (i, o) in shapes.items() if t in lora.targets)
    return per_layer * config.n_layer


def estimate(
    config: Config,
    n_params: int,
    lora: LoRASettings,
    settings: FinetuneSettings,
    *,
    dtype: str = "float32",
    device: str = "cpu",
) -> Estimate:
    """The memory a run needs at its peak: a backward pass over one micro-batch
    of ``batch`` sequences of ``ctx`` tokens."""
    size = 2 if dtype == "bfloat16" else 4
    e, f = config.n_embd, config.n_ff
    width, kv = config.n_head * config.head_dim, config.n_head_kv * config.head_dim
    tokens = settings.batch * settings.ctx
    # kept for the backward pass, per token and layer: the projections' outputs,
    # the rotated queries and keys, the keys and values repeated for each query
    # head, the attention's output, the feed-forward's four intermediates, each
    # adapter's own (its input in float32, A x), and about 15 vectors of the
    # model's width (the norms' steps, the residual stream, reshaped copies):
    # measured with benchmarks/lora.py, within 15% from 20M to 60M parameters
    kept = 15 * e + 2 * (width + 2 * kv) + 2 * width + 2 * width + 4 * f
    adapted = {"q": e, "k": e, "v": e, "o": width, "gate": e, "up": e, "down": f}
    lora_kept = sum(adapted[t] + lora.rank for t in lora.targets)
    activations = tokens * config.n_layer * (kept * size + lora_kept * 4)
    logits = tokens * config.vocab_size * 4 * 3  # logits, their softmax, its gradient
    adapter = lora_parameter_count(config, lora) * 4 * 4  # weights, grads, AdamW's two
    return Estimate(
        weights=n_params * size,
        adapter=adapter,
        activations=activations,
        logits=logits,
        runtime=RUNTIME_BYTES,
        dtype=dtype,
        device=device,
    )


def plan(path: str | os.PathLike[str], lora: LoRASettings, settings: FinetuneSettings) -> Estimate:
    """Choose the device and dtype for a run on ``path``, or refuse it: the
    estimate must fit in the free memory (RAM, or the GPU's)."""
    info, config = base_mod.check(path)
    cuda = torch.cuda.is_available()
    if settings.device == "cuda" and not cuda:
        raise TrainError("PyTorch has no CUDA device here: use --device cpu")
    device = "cuda" if cuda and settings.device != "cpu" else "cpu"
    config = replace(config, n_ctx=settings.ctx)
    n_params = info.parameter_count or sum(t.n_elements for t in info.tensors)
    if device == "cuda":
        free = torch.cuda.mem_get_info()[0]
    else:
        found = hardware.memory()
        free = found[1] if found else 0
    choices = [settings.dtype] if settings.dtype != "auto" else ["float32", "bfloat16"]
    for dtype in choices:
        need = estimate(config, n_params, lora, settings, dtype=dtype, device=device)
        if not free or need.total <= 0.9 * free:
            return need
    raise TrainError(
        f"fine-tuning {info.path.name} needs about {need.describe()}, but only "
        f"{free / GB:.1f} GB {'of GPU memory' if device == 'cuda' else 'of RAM'} is free: "
        "lower --batch or --ctx, or choose a smaller model"
    )
