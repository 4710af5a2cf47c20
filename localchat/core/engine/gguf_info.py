"""What a GGUF file is, read from its header without loading the weights.

``gguf.GGUFReader`` materialises every array in the header as Python objects,
which takes over ten seconds for a Llama 3 vocabulary (400k strings); a model
picker cannot wait that long per file. This reader walks the same format with
the ``gguf`` package's own type tables, keeps scalars and short arrays, and only
counts the long ones. ``tests/test_gguf_info.py`` checks it against GGUFReader.

It also checks that the file is whole: a header that ends early or tensor data
that runs past the end of the file (an interrupted download) is reported in one
line before llama.cpp ever sees the file.
"""

from __future__ import annotations

import functools
import mmap
import os
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gguf import GGMLQuantizationType, GGUFValueType

from localchat.core.errors import ModelFileError

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
SHORT_ARRAY = 64
"""Arrays up to this length are kept; longer ones only counted."""


@functools.cache
def _gguf() -> Any:
    """The gguf package, imported on first use: it imports numpy, a tenth of a
    second that the window should not spend before it first paints."""
    import gguf

    return gguf


@functools.cache
def _scalar_formats() -> dict[GGUFValueType, str]:
    t = _gguf().GGUFValueType
    return {
        t.UINT8: "<B",
        t.INT8: "<b",
        t.UINT16: "<H",
        t.INT16: "<h",
        t.UINT32: "<I",
        t.INT32: "<i",
        t.FLOAT32: "<f",
        t.BOOL: "<?",
        t.UINT64: "<Q",
        t.INT64: "<q",
        t.FLOAT64: "<d",
    }


_OTHER_FORMATS = {
    b"PK\x03\x04": "a zip archive (a PyTorch checkpoint?)",
    b"\x80\x02": "a Python pickle (a PyTorch checkpoint?)",
    b"ggjt": "an old GGML file (convert it to GGUF)",
    b"ggml": "an old GGML file (convert it to GGUF)",
    b"ggla": "an old GGML LoRA file (convert it to GGUF)",
}


@dataclass(frozen=True)
class ArrayInfo:
    """A long header array, counted but not read (e.g. the vocabulary)."""

    type: GGUFValueType
    count: int


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    type: GGMLQuantizationType
    offset: int
    n_bytes: int

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class ModelInfo:
    """A model file's vital statistics."""

    path: Path
    file_size: int
    architecture: str
    name: str
    file_kind: str
    """``general.type``: "model" or "adapter"."""
    parameter_count: int
    quantization: str
    context_length: int
    """The context the model was trained for (0 when the file does not say)."""
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    n_vocab: int
    chat_template: str | None
    metadata: dict[str, Any] = field(repr=False)
    tensors: tuple[TensorInfo, ...] = field(repr=False)

    @property
    def has_chat_template(self) -> bool:
        return bool(self.chat_template and self.chat_template.strip())

    @property
    def weights_bytes(self) -> int:
        return sum(t.n_bytes for t in self.tensors)

    def kv_cache_bytes(self, n_ctx: int) -> int:
        """The KV cache llama.cpp allocates at ``n_ctx`` (f16 keys and values)."""
        if not self.n_head:
            return 0
        head_dim = self.n_embd // self.n_head
        k_dim = int(self.metadata.get(f"{self.architecture}.attention.key_length", head_dim))
        v_dim = int(self.metadata.get(f"{self.architecture}.attention.value_length", head_dim))
        n_kv = self.n_head_kv or self.n_head
        return self.n_layer * n_ctx * n_kv * (k_dim + v_dim) * 2

    def compute_bytes(self, n_ctx: int, n_batch: int = 512) -> int:
        """llama.cpp's compute buffer for a batch: dominated, without flash
        attention, by the attention scores (heads x batch x context floats)."""
        n_ff = int(self.metadata.get(f"{self.architecture}.feed_forward_length", 4 * self.n_embd))
        return 4 * n_batch * (max(self.n_head, 1) * n_ctx + 2 * n_ff)

    def ram_estimate(self, n_ctx: int, n_batch: int = 512) -> int:
        """Bytes of memory the model needs at ``n_ctx``: the weights, the KV
        cache, llama.cpp's compute buffer, the logits buffer of a batch, and the
        worker process itself."""
        logits = 4 * self.n_vocab * n_batch
        return (
            self.weights_bytes
            + self.kv_cache_bytes(n_ctx)
            + self.compute_bytes(n_ctx, n_batch)
            + logits
            + 64 * 2**20
        )


def read_model_info(
    path: str | os.PathLike[str], *, full_arrays: tuple[str, ...] = ()
) -> ModelInfo:
    """Read and check a GGUF file's header; raise :class:`ModelFileError` with a
    one-line reason when it is not a usable GGUF file.

    Arrays longer than :data:`SHORT_ARRAY` come back as :class:`ArrayInfo`
    unless their key starts with one of ``full_arrays``."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelFileError(f"no such file: {p}")
    if p.is_dir():
        raise ModelFileError(f"{p} is a folder, not a model file")
    try:
        size = p.stat().st_size
        if size == 0:
            raise ModelFileError(f"{p.name} is empty (0 bytes)")
        with open(p, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _parse(p, buf, size, full_arrays)
    except OSError as exc:
        raise ModelFileError(f"cannot read {p}: {exc.strerror or exc}") from None


class _Truncated(Exception):
    pass


class _Cursor:
    def __init__(self, buf: mmap.mmap, size: int) -> None:
        self.buf = buf
        self.size = size
        self.pos = 0

    def take(self, fmt: str) -> Any:
        n = struct.calcsize(fmt)
        if self.pos + n > self.size:
            raise _Truncated
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return value

    def string(self) -> str:
        n = self.take("<Q")
        if self.pos + n > self.size:
            raise _Truncated
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def skip_strings(self, count: int) -> None:
        buf, pos, size = self.buf, self.pos, self.size
        unpack = struct.Struct("<Q").unpack_from
        for _ in range(count):
            if pos + 8 > size:
                raise _Truncated
            pos += 8 + unpack(buf, pos)[0]
        if pos > size:
            raise _Truncated
        self.pos = pos

    def value(self, vtype: int, full: bool = False) -> Any:
        types = _gguf().GGUFValueType
        t = _value_type(vtype)
        if t == types.STRING:
            return self.string()
        if t == types.ARRAY:
            etype = _value_type(self.take("<I"))
            count = self.take("<Q")
            if count <= SHORT_ARRAY or full:
                return [self.value(etype, full) for _ in range(count)]
            if etype == types.STRING:
                self.skip_strings(count)
            elif etype == types.ARRAY:
                for _ in range(count):
                    self.value(etype)
            else:
                self.pos += struct.calcsize(_scalar_formats()[etype]) * count
                if self.pos > self.size:
                    raise _Truncated
            return ArrayInfo(etype, count)
        return self.take(_scalar_formats()[t])


def _value_type(v: int) -> GGUFValueType:
    try:
        return _gguf().GGUFValueType(v)
    except ValueError:
        raise ModelFileError(f"unknown GGUF value type {v}") from None


def _parse(p: Path, buf: mmap.mmap, size: int, full_arrays: tuple[str, ...]) -> ModelInfo:
    head = bytes(buf[:4])
    if head != GGUF_MAGIC:
        for magic, what in _OTHER_FORMATS.items():
            if head.startswith(magic):
                raise ModelFileError(f"{p.name} is not a GGUF model file: it is {what}")
        raise ModelFileError(f"{p.name} is not a GGUF model file")
    cur = _Cursor(buf, size)
    cur.pos = 4
    try:
        version = cur.take("<I")
        if version not in (2, 3):
            if version > 0xFFFF:
                raise ModelFileError(f"{p.name} is a big-endian GGUF file, which is not supported")
            raise ModelFileError(f"{p.name} uses GGUF version {version}, which is not supported")
        n_tensors = cur.take("<Q")
        n_kv = cur.take("<Q")
        # Real models have thousands of entries; billions mean a corrupt header.
        if n_tensors > 2**24 or n_kv > 2**24:
            raise ModelFileError(f"{p.name} has a corrupt GGUF header")
        meta: dict[str, Any] = {}
        for _ in range(n_kv):
            key = cur.string()
            meta[key] = cur.value(cur.take("<I"), key.startswith(full_arrays))
        tensor_heads = []
        for _ in range(n_tensors):
            name = cur.string()
            n_dims = cur.take("<I")
            if n_dims > 8:
                raise ModelFileError(f"{p.name} has a corrupt tensor entry ({name})")
            shape = tuple(cur.take("<Q") for _ in range(n_dims))
            ttype = cur.take("<I")
            offset = cur.take("<Q")
            tensor_heads.append((name, shape, ttype, offset))
    except _Truncated:
        raise ModelFileError(
            f"{p.name} is truncated: its header ends early (an incomplete download?)"
        ) from None

    alignment = int(meta.get("general.alignment", DEFAULT_ALIGNMENT)) or DEFAULT_ALIGNMENT
    data_start = -(-cur.pos // alignment) * alignment
    tensors = []
    end = cur.pos
    for name, shape, ttype, offset in tensor_heads:
        try:
            qtype = _gguf().GGMLQuantizationType(ttype)
            block, type_size = _gguf().GGML_QUANT_SIZES[qtype]
        except (ValueError, KeyError):
            raise ModelFileError(
                f"{p.name} uses tensor type {ttype} ({name}), which is not supported"
            ) from None
        n = 1
        for d in shape:
            n *= d
        n_bytes = n // block * type_size
        tensors.append(TensorInfo(name, shape, qtype, offset, n_bytes))
        end = max(end, data_start + offset + n_bytes)
    if end > size:
        raise ModelFileError(
            f"{p.name} is truncated: its tensors need {end:,} bytes but the file has "
            f"{size:,} (an incomplete download?)"
        )
    return _model_info(p, size, meta, tuple(tensors))


def _model_info(
    p: Path, size: int, meta: dict[str, Any], tensors: tuple[TensorInfo, ...]
) -> ModelInfo:
    arch = str(meta.get("general.architecture", ""))

    def num(key: str) -> int:
        v = meta.get(f"{arch}.{key}", 0)
        if isinstance(v, list):  # per-layer values (e.g. head_count_kv in some models)
            v = max(v) if v else 0
        return int(v) if isinstance(v, int | float) else 0

    tokens = meta.get("tokenizer.ggml.tokens")
    n_vocab = tokens.count if isinstance(tokens, ArrayInfo) else len(tokens or [])
    if not n_vocab:
        n_vocab = num("vocab_size")
    template = meta.get("tokenizer.chat_template")
    return ModelInfo(
        path=p,
        file_size=size,
        architecture=arch,
        name=str(meta.get("general.name") or p.stem),
        file_kind=str(meta.get("general.type", "model")),
        parameter_count=sum(t.n_elements for t in tensors),
        quantization=_quantization(meta, tensors),
        context_length=num("context_length"),
        n_layer=num("block_count"),
        n_embd=num("embedding_length"),
        n_head=num("attention.head_count"),
        n_head_kv=num("attention.head_count_kv"),
        n_vocab=n_vocab,
        chat_template=template if isinstance(template, str) else None,
        metadata=meta,
        tensors=tensors,
    )


def _quantization(meta: dict[str, Any], tensors: tuple[TensorInfo, ...]) -> str:
    ft = meta.get("general.file_type")
    if isinstance(ft, int):
        try:
            return _gguf().LlamaFileType(ft).name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except ValueError:
            pass
    matrices = Counter(t.type.name for t in tensors if len(t.shape) >= 2)
    return matrices.most_common(1)[0][0] if matrices else "unknown"
