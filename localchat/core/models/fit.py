"""Does a model fit this computer at a context size? One answer for every
place that asks: the model manager's badges, ``localchat models files`` and
the memory note under the context size.

Need: the weights, the KV cache at the chosen context, and llama.cpp's buffers
and the process. For an installed model the header gives the exact sizes
(``ModelInfo``), and the context is capped at what the model takes; for a file
on the Hub, only its size is known, so the KV cache is estimated from it (about
64 KiB per token per GB of weights: generous for today's grouped-query models,
short for old 13B ones without it). Compared with the memory available now
(and the total):

- ``fits``: the need is within 80% of what is available;
- ``tight``: within 90% of the total: other programs must make room, or it may swap;
- ``too big``: more than that.

Where an NVIDIA GPU is found (``hardware.gpu_memory``) and layers go to it, a
model whose need is within 90% of the GPU's free memory fits there, whatever
the RAM; otherwise the RAM decides (layers that do not fit on the GPU run on
the CPU). Apple's GPUs share the RAM, so there the RAM verdict is the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from localchat.core import hardware
from localchat.core.engine.gguf_info import ModelInfo
from localchat.core.params import effective_ctx
from localchat.core.units import human_size

Verdict = Literal["fits", "tight", "too big", "unknown"]
Memory = tuple[int, int]
"""Total and available (free) bytes."""
Detect = Literal["detect"]
DETECT: Detect = "detect"
"""Read it from this computer now (the default for RAM and GPU)."""
OVERHEAD = 320 * 2**20
"""Compute buffers, logits and the worker process, roughly (for a file on the Hub)."""


@dataclass(frozen=True)
class Fit:
    verdict: Verdict
    need: int
    """Bytes of memory the model needs at ``n_ctx``."""
    available: int
    """RAM free now (0 where unknown)."""
    total: int
    """All the RAM (0 where unknown)."""
    gpu: Memory | None = None
    """The GPU's total and free memory, where one was considered."""
    on_gpu: bool = False
    """It fits in the GPU's free memory."""
    n_ctx: int = 0
    """The context it was judged at: the one asked for, or for an installed
    model what it runs with (capped at its trained context, a multiple of 256)."""
    requested_ctx: int = 0
    """The context asked for."""
    trained_ctx: int = 0
    """The context an installed model was trained for (0: not known)."""
    weights: int = 0
    """Bytes of the weights (a file on the Hub: its size)."""
    kv_cache: int = 0
    """Bytes of the KV cache at ``n_ctx`` (a file on the Hub: estimated)."""

    @property
    def short_of_free(self) -> bool:
        """It needs more than the RAM free now (known to be)."""
        return self.total > 0 and self.need > self.available

    def explain(self) -> str:
        """The numbers behind the verdict, for a badge's tooltip."""
        text = f"needs about {human_size(self.need)}"
        if self.verdict == "unknown":
            return f"{text}; this computer's memory is unknown"
        if self.total:
            text += f"; {human_size(self.available)} of {human_size(self.total)} RAM is free now"
        if self.gpu is not None:
            free = f"{human_size(self.gpu[1])} of {human_size(self.gpu[0])}"
            text += (
                f"; it fits on the GPU ({free} free)"
                if self.on_gpu
                else f"; the GPU has {free} free: too little for all of it, the rest runs on "
                "the CPU"
            )
        return text

    def note(self) -> str:
        """What the need is made of and the RAM beside it: the note under the
        context size, before the setting is applied."""
        text = (
            f"About {human_size(self.need)} of memory at {self.n_ctx:,} tokens (the model "
            f"{human_size(self.weights)}, its KV cache {human_size(self.kv_cache)})"
        )
        if self.n_ctx != self.requested_ctx:
            text += f"; this model takes at most {self.trained_ctx:,}"
        if self.total:
            text += (
                f". This computer has {human_size(self.available)} free of "
                f"{human_size(self.total)}."
            )
        return text


def kv_estimate(file_bytes: int, n_ctx: int) -> int:
    return int(file_bytes / 2**30 * 64 * 1024 * n_ctx)


def fit(
    model: int | ModelInfo,
    n_ctx: int,
    *,
    memory: Memory | Detect | None = DETECT,
    gpu: Memory | Detect | None = DETECT,
    gpu_layers: int = -1,
) -> Fit:
    """Does ``model`` fit at ``n_ctx`` tokens on this computer?

    ``model`` is a file's size in bytes (a file on the Hub, a catalog estimate)
    or an installed model's header, whose exact sizes count and whose trained
    context caps ``n_ctx``. ``memory`` (total, available RAM) and ``gpu``
    (total, free) are this computer's, read now, unless given; None: unknown,
    or no GPU. Reading the GPU runs ``nvidia-smi`` (up to seconds): a GUI
    thread passes what it read off-thread, or ``gpu=None``. With ``gpu_layers``
    0 every layer stays on the CPU and no GPU is considered."""
    if isinstance(model, ModelInfo):
        ctx = effective_ctx(n_ctx, model.context_length)
        weights, kv_cache = model.weights_bytes, model.kv_cache_bytes(ctx)
        need, trained = model.ram_estimate(ctx), model.context_length
    else:
        ctx, weights, kv_cache, trained = n_ctx, model, kv_estimate(model, n_ctx), 0
        need = weights + kv_cache + OVERHEAD
    if gpu_layers == 0:
        gpu = None
    elif isinstance(gpu, str):
        gpu = hardware.gpu_memory()
    if isinstance(memory, str):
        memory = hardware.memory()
    on_gpu = gpu is not None and need <= 0.9 * gpu[1]
    verdict: Verdict
    if memory is None:
        verdict, total, available = ("fits" if on_gpu else "unknown"), 0, 0
    else:
        total, available = memory
        if on_gpu or need <= 0.8 * available:
            verdict = "fits"
        elif need <= 0.9 * total:
            verdict = "tight"
        else:
            verdict = "too big"
    return Fit(
        verdict,
        need,
        available,
        total,
        gpu,
        on_gpu,
        n_ctx=ctx,
        requested_ctx=n_ctx,
        trained_ctx=trained,
        weights=weights,
        kv_cache=kv_cache,
    )
