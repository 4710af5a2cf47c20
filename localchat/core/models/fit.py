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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from localchat.core import hardware
from localchat.core.engine.gguf_info import ModelInfo, human_size

Verdict = Literal["fits", "tight", "too big", "unknown"]
OVERHEAD = 320 * 2**20
"""Compute buffers, logits and the worker process, roughly."""


@dataclass(frozen=True)
class Fit:
    verdict: Verdict
    need: int
    available: int
    total: int

    def explain(self) -> str:
        if self.verdict == "unknown":
            return f"needs about {human_size(self.need)}; this computer's memory is unknown"
        return (
            f"needs about {human_size(self.need)}; {human_size(self.available)} of "
            f"{human_size(self.total)} is free now"
        )


def kv_estimate(file_bytes: int, n_ctx: int) -> int:
    return int(file_bytes / 2**30 * 64 * 1024 * n_ctx)


def fit(
    file_bytes: int,
    n_ctx: int,
    *,
    info: ModelInfo | None = None,
    memory: tuple[int, int] | None = None,
) -> Fit:
    """The verdict for a model of ``file_bytes`` at ``n_ctx`` tokens; ``memory``
    (total, available) defaults to this computer's."""
    if info is not None:
        need = info.ram_estimate(n_ctx)
    else:
        need = file_bytes + kv_estimate(file_bytes, n_ctx) + OVERHEAD
    mem = memory if memory is not None else hardware.memory()
    if mem is None:
        return Fit("unknown", need, 0, 0)
    total, available = mem
    if need <= 0.8 * available:
        verdict: Verdict = "fits"
    elif need <= 0.9 * total:
        verdict = "tight"
    else:
        verdict = "too big"
    return Fit(verdict, need, available, total)
