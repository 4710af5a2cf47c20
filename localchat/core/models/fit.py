"""Will a model fit in this computer's memory? A badge and its numbers.

Need: the weights (the file's size), the KV cache at the chosen context, and
llama.cpp's buffers and the process. For an installed model the header gives
the exact KV cache size (``ModelInfo``); for a file on the Hub, only its size
is known, so the KV cache is estimated from it (about 64 KiB per token per GB
of weights: generous for today's grouped-query models, short for old 13B ones
without it). Compared with the memory available now (and the total):

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
from localchat.core.units import human_size

Verdict = Literal["fits", "tight", "too big", "unknown"]
OVERHEAD = 320 * 2**20
"""Compute buffers, logits and the worker process, roughly."""


@dataclass(frozen=True)
class Fit:
    verdict: Verdict
    need: int
    available: int
    total: int
    gpu: tuple[int, int] | None = None
    """The GPU's total and free memory, where one was considered."""
    on_gpu: bool = False
    """It fits in the GPU's free memory."""

    def explain(self) -> str:
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


def kv_estimate(file_bytes: int, n_ctx: int) -> int:
    return int(file_bytes / 2**30 * 64 * 1024 * n_ctx)


def fit(
    file_bytes: int,
    n_ctx: int,
    *,
    info: ModelInfo | None = None,
    memory: tuple[int, int] | None = None,
    gpu: tuple[int, int] | None = None,
) -> Fit:
    """The verdict for a model of ``file_bytes`` at ``n_ctx`` tokens; ``memory``
    (total, available RAM) defaults to this computer's; ``gpu`` (total, free)
    is the GPU the layers would go to, if any."""
    if info is not None:
        need = info.ram_estimate(n_ctx)
    else:
        need = file_bytes + kv_estimate(file_bytes, n_ctx) + OVERHEAD
    on_gpu = gpu is not None and need <= 0.9 * gpu[1]
    mem = memory if memory is not None else hardware.memory()
    if mem is None:
        return Fit("fits" if on_gpu else "unknown", need, 0, 0, gpu, on_gpu)
    total, available = mem
    if on_gpu or need <= 0.8 * available:
        verdict: Verdict = "fits"
    elif need <= 0.9 * total:
        verdict = "tight"
    else:
        verdict = "too big"
    return Fit(verdict, need, available, total, gpu, on_gpu)
