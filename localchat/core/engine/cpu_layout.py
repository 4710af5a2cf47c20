"""The worker's side of llama.cpp's CPU backend: loading it where it comes as
loadable variants, which extra buffer types (weight layouts) it offers, and
loading a model with some of them turned off and the others kept (see
``layouts.py`` for why).

llama.cpp can only turn all extra buffer types off
(``llama_model_params.use_extra_bufts``). To keep the others, the worker turns
them all off and puts back, tensor by tensor, the weights that the first
remaining one would have taken (``tensor_buft_overrides``, llama.cpp's
``--override-tensor``). Which weights those are is llama.cpp's rule, mirrored
here for ``CPU_REPACK`` (``ggml_repack_get_optimal_repack_type`` in
``ggml-cpu/repack.cpp``): a test holds the mirror to llama.cpp's own choice on a
CPU without AMX, where the two must place the very same bytes.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import platform
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gguf
import llama_cpp
import llama_cpp.llama_cpp as llama_lib

from localchat.core.engine.gguf_info import read_model_info
from localchat.core.engine.layouts import override_patterns

REPACK = "CPU_REPACK"
Q = gguf.GGMLQuantizationType
# The weights that llama.cpp multiplies with the activations: the only ones an
# extra buffer type takes (2-D matrices for GGML_OP_MUL_MAT, 3-D experts for
# GGML_OP_MUL_MAT_ID). Group 1: the layer (none for the output matrix).
_MATMUL = re.compile(
    r"^(?:output|blk\.(\d+)\.(?:attn_(?:q|k|v|qkv|output)|ffn_(?:gate|up|down)(?:_exps)?"
    r"|ssm_(?:in|out)))\.weight$"
)


class _Override(ctypes.Structure):
    """``struct llama_model_tensor_buft_override``."""

    _fields_ = [("pattern", ctypes.c_char_p), ("buft", ctypes.c_void_p)]


@functools.cache
def ggml() -> ctypes.CDLL:
    """ggml's functions as libllama sees them. On Linux and macOS, looked up
    through libllama's own handle, which searches its dependencies: loading
    libggml by file name could map a second copy (a wheel holds libggml.so,
    .so.0 and .so.0.x as three files, not links), with a registry of its own,
    empty of the backends libllama's has. On Windows a DLL's handle finds only
    its own exports, and ggml.dll by its full path is the one llama.dll loaded."""
    if sys.platform == "win32":
        lib = ctypes.CDLL(str(LIB_DIR / "ggml.dll"))
    else:
        lib = ctypes.CDLL(llama_lib._lib._name)
    lib.ggml_backend_dev_by_type.restype = ctypes.c_void_p
    lib.ggml_backend_dev_by_type.argtypes = [ctypes.c_int]
    lib.ggml_backend_dev_backend_reg.restype = ctypes.c_void_p
    lib.ggml_backend_dev_backend_reg.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_reg_get_proc_address.restype = ctypes.c_void_p
    lib.ggml_backend_reg_get_proc_address.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.ggml_backend_buft_name.restype = ctypes.c_char_p
    lib.ggml_backend_buft_name.argtypes = [ctypes.c_void_p]
    return lib


LIB_DIR = Path(llama_cpp.__file__).parent / "lib"


def load_backends() -> bool:
    """In a build of loadable backends (``GGML_BACKEND_DL``, as the installers
    ship: every x86 CPU variant from SSE4.2 to AMX, the best one picked at run
    time), load them from llama-cpp-python's library folder; ggml itself looks
    only beside the executable and in the working folder. Returns whether it
    loaded any (a build with its CPU backend linked in has nothing to load)."""
    if not any(LIB_DIR.glob("*ggml-cpu-*")):
        return False
    try:
        lib = ggml()
        lib.ggml_backend_reg_count.restype = ctypes.c_size_t
        if lib.ggml_backend_reg_count():
            return False
        lib.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]
        lib.ggml_backend_load_all_from_path(str(LIB_DIR).encode())
    except (OSError, AttributeError):  # ggml's own search stays (beside the program)
        return False
    return True


VARIANT_LINE = re.compile(r"loaded CPU backend from \S*ggml-cpu-([\w.]+?)\.(?:so|dll|dylib)\b")
"""ggml's log line naming the CPU variant it picked, e.g. libggml-cpu-haswell.so."""


def _cpu_function(name: bytes, restype: Any) -> tuple[Any, int, int] | None:
    """A function the CPU backend exports through ggml's registry, with the
    CPU device and its registry (one of them is its argument); None without a
    CPU backend or without that function."""
    try:
        lib = ggml()
        dev = lib.ggml_backend_dev_by_type(0)  # GGML_BACKEND_DEVICE_TYPE_CPU
        if not dev:
            return None
        reg = lib.ggml_backend_dev_backend_reg(dev)
        address = lib.ggml_backend_reg_get_proc_address(reg, name)
    except (OSError, AttributeError):
        return None
    if not address:
        return None
    return ctypes.CFUNCTYPE(restype, ctypes.c_void_p)(address), dev, reg


@functools.cache
def extra_buffer_types() -> dict[str, int]:
    """The CPU backend's extra buffer types, name to handle, in llama.cpp's
    order of preference (e.g. {"AMX": ..., "CPU_REPACK": ...}); empty for a
    build without them or without ggml's registry API."""
    found = _cpu_function(b"ggml_backend_dev_get_extra_bufts", ctypes.POINTER(ctypes.c_void_p))
    if found is None:
        return {}
    get, dev, _reg = found
    bufts = get(dev)
    names: dict[str, int] = {}
    i = 0
    while bufts and bufts[i]:
        names[ggml().ggml_backend_buft_name(bufts[i]).decode()] = int(bufts[i])
        i += 1
    return names


class _Feature(ctypes.Structure):
    """``struct ggml_backend_feature``."""

    _fields_ = [("name", ctypes.c_char_p), ("value", ctypes.c_char_p)]


@functools.cache
def _cpu_has() -> dict[str, bool]:
    """The CPU features llama.cpp's repack rule asks about, as the CPU backend
    in use reports them (``ggml_backend_get_features``: the variant loaded,
    in a build of loadable CPU variants)."""
    found = _cpu_function(b"ggml_backend_get_features", ctypes.POINTER(_Feature))
    if found is None:
        return {}
    get, _dev, reg = found
    features = get(reg)
    names: set[str] = set()
    i = 0
    while features[i].name:
        names.add(features[i].name.decode())
        i += 1
    return {
        "avx2": "AVX2" in names,
        "avx512": "AVX512" in names,
        "neon": "NEON" in names,
        "matmul_int8": "MATMUL_INT8" in names,
        "dotprod": "DOTPROD" in names,
    }


def repacks(qtype: int, rows: int, has: dict[str, bool]) -> bool:
    """Whether ``CPU_REPACK`` takes a 2-D weight of this type with ``rows``
    output rows (``ne[1]``) on a CPU with the features ``has``: llama.cpp's
    ``ggml_repack_get_optimal_repack_type`` for x86 and ARM."""
    avx2, neon = has.get("avx2", False), has.get("neon", False)
    i8mm = neon and has.get("matmul_int8", False)
    dot = neon and has.get("dotprod", False)
    by8, by4 = rows % 8 == 0, rows % 4 == 0
    if qtype == Q.Q4_0:
        return (avx2 and by8) or ((i8mm or dot) and by4)
    if qtype == Q.Q4_K:
        return (avx2 or i8mm or dot) and by8
    if qtype == Q.Q2_K:
        return has.get("avx512", False) and by8
    if qtype in (Q.IQ4_NL, Q.MXFP4):
        return (avx2 and by8) or (dot and by4)
    if qtype in (Q.Q5_K, Q.Q6_K):
        return (i8mm or dot) and by8
    if qtype == Q.Q8_0:
        return (i8mm or dot) and by4
    return False


def repacked_tensors(path: str, gpu_layers: int = 0) -> list[tuple[str, int]]:
    """The weights of the model at ``path`` that ``CPU_REPACK`` takes on this
    CPU, with ``gpu_layers`` offloaded (-1: all): (name, bytes). Offloaded
    layers are the GPU's; an override would pull them back to the CPU."""
    info = read_model_info(path)
    has = _cpu_has()
    # llama.cpp offloads the last layers and then the output: layer i is the
    # GPU's from n_layer + 1 - gpu_layers on, the output (n_layer) with any.
    gpu = 2**31 - 1 if gpu_layers < 0 else gpu_layers
    first_on_gpu = max(info.n_layer + 1 - gpu, 0)
    found = []
    for t in info.tensors:
        m = _MATMUL.match(t.name)
        if m is None or len(t.shape) not in (2, 3):
            continue
        layer = info.n_layer if m[1] is None else int(m[1])
        if layer >= first_on_gpu:
            continue
        if (len(t.shape) == 3) != t.name.endswith("_exps.weight"):
            continue
        if repacks(int(t.type), int(t.shape[1]), has):
            found.append((t.name, t.n_bytes))
    return found


@contextlib.contextmanager
def turned_off(path: str, off: tuple[str, ...], gpu_layers: int = 0) -> Iterator[None]:
    """Within this block, ``llama_cpp.Llama(path)`` loads without the extra
    buffer types ``off``, the others kept where llama.cpp supports placing
    them (on the layers the CPU runs). (llama-cpp-python builds its model
    parameters from ``llama_model_default_params``; the block hands it ones
    with ours.)"""
    extras = extra_buffer_types()
    if not off:
        yield
        return
    keep = [name for name in extras if name not in off]
    names = [n for n, _ in repacked_tensors(path, gpu_layers)] if REPACK in keep else []
    patterns = [p.encode() for p in override_patterns(names)]
    overrides = (_Override * (len(patterns) + 1))()  # NULL-terminated
    for slot, pattern in zip(overrides, patterns, strict=False):
        slot.pattern, slot.buft = pattern, extras[REPACK]
    defaults = llama_lib.llama_model_default_params

    def params() -> llama_lib.llama_model_params:
        p = defaults()
        p.use_extra_bufts = False
        if patterns:
            p.tensor_buft_overrides = ctypes.addressof(overrides)
        return p

    llama_lib.llama_model_default_params = params
    try:
        yield
    finally:
        llama_lib.llama_model_default_params = defaults


@functools.cache
def platform_key() -> str:
    """This CPU and this llama.cpp build, as a short hash: what a remembered
    layout is valid for (a new CPU or a rebuilt llama.cpp tries again)."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    build = llama_cpp.__version__ + (llama_cpp.llama_print_system_info() or b"").decode()
    return hashlib.sha256(f"{cpu}\n{build}".encode()).hexdigest()[:16]
