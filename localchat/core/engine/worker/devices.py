"""What the model can run on: the devices of this llama.cpp build, the words
for them, and the fall back to the CPU when the GPU cannot take a model."""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable, Sequence
from typing import TypeVar

from localchat.core.engine import cpu_layout
from localchat.core.errors import ModelLoadError

T = TypeVar("T")
Device = tuple[str, str, bool]
"""(backend, description, is a GPU)."""


def load_with_gpu_fallback(
    construct: Callable[[int], T], gpu_layers: int
) -> tuple[T, int, str | None]:
    """``construct(gpu_layers)``; if offloading fails, ``construct(0)`` (the CPU)
    and a notice saying so. Returns the result, the layers used and the notice."""
    try:
        return construct(gpu_layers), gpu_layers, None
    except ModelLoadError as exc:
        if gpu_layers == 0:
            raise
        notice = f"the GPU could not take the model ({exc}); running on the CPU instead"
        return construct(0), 0, notice


@functools.cache
def compute_devices() -> tuple[Device, ...]:
    """The devices this llama.cpp build can compute on, from ggml's registry:
    (backend, description, is a GPU), e.g. ("CUDA", "NVIDIA GeForce RTX 4090",
    True), ("Metal", "Apple M2", True), ("CPU", "AMD EPYC", False). Read once
    per process: the registry is fixed when ggml loads."""
    lib = cpu_layout.ggml()
    lib.ggml_backend_dev_count.restype = ctypes.c_size_t
    lib.ggml_backend_dev_get.restype = ctypes.c_void_p
    lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
    for name in ("ggml_backend_dev_description", "ggml_backend_reg_name"):
        getattr(lib, name).restype = ctypes.c_char_p
        getattr(lib, name).argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_type.restype = ctypes.c_int
    lib.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_backend_reg.restype = ctypes.c_void_p
    lib.ggml_backend_dev_backend_reg.argtypes = [ctypes.c_void_p]
    devices = []
    for i in range(lib.ggml_backend_dev_count()):
        dev = lib.ggml_backend_dev_get(i)
        backend = lib.ggml_backend_reg_name(lib.ggml_backend_dev_backend_reg(dev)).decode()
        description = (lib.ggml_backend_dev_description(dev) or b"").decode(errors="replace")
        kind = lib.ggml_backend_dev_type(dev)  # 0 CPU, 1 GPU, 2 integrated GPU, 3 accelerator
        devices.append((backend, description.strip(), kind in (1, 2)))
    return tuple(devices)


def known_devices() -> tuple[Device, ...]:
    """:func:`compute_devices`, or none for a build without ggml's registry API."""
    try:
        return compute_devices()
    except (OSError, AttributeError):
        return ()


def describe_backend(devices: Sequence[Device], gpu_layers: int) -> str:
    """What the model runs on, in words: "CPU", or the GPU backend and device
    ("CUDA · NVIDIA GeForce RTX 4090") when layers are offloaded."""
    gpus = [(b, d) for b, d, gpu in devices if gpu]
    if gpu_layers == 0 or not gpus:  # -1: all layers
        return "CPU"
    backend = gpus[0][0]
    names = ", ".join(dict.fromkeys(d for b, d in gpus if b == backend and d))
    return f"{backend} · {names}" if names else backend
