"""Write a llama-architecture model as a GGUF file llama.cpp loads.

One writer for every model this project makes: the trainer's exports and the
tests' random-weight models (``localchat.testing.tiny_models``). Tensors come
as numpy arrays in llama.cpp's names and PyTorch's ``[out, in]`` layout
(``token_embd.weight``, ``blk.N.attn_q.weight``...); the tokenizer as the
``tokenizer.*`` keys of a GGUF. Norm weights stay F32; the matrices may be
stored as F16, Q8_0 or Q4_0.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

QTYPES = {
    "f32": gguf.GGMLQuantizationType.F32,
    "f16": gguf.GGMLQuantizationType.F16,
    "q8_0": gguf.GGMLQuantizationType.Q8_0,
    "q4_0": gguf.GGMLQuantizationType.Q4_0,
}
_FILE_TYPES = {
    gguf.GGMLQuantizationType.F32: gguf.LlamaFileType.ALL_F32,
    gguf.GGMLQuantizationType.F16: gguf.LlamaFileType.MOSTLY_F16,
    gguf.GGMLQuantizationType.Q8_0: gguf.LlamaFileType.MOSTLY_Q8_0,
    gguf.GGMLQuantizationType.Q4_0: gguf.LlamaFileType.MOSTLY_Q4_0,
}
_TYPED = {
    "tokenizer.ggml.model": "add_tokenizer_model",
    "tokenizer.ggml.pre": "add_tokenizer_pre",
    "tokenizer.ggml.tokens": "add_token_list",
    "tokenizer.ggml.scores": "add_token_scores",
    "tokenizer.ggml.token_type": "add_token_types",
    "tokenizer.ggml.merges": "add_token_merges",
    "tokenizer.chat_template": "add_chat_template",
}


@dataclass(frozen=True)
class LlamaShape:
    """The hyperparameters llama.cpp needs to build the graph."""

    n_vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    context_length: int
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


def add_kv(w: gguf.GGUFWriter, key: str, value: Any) -> None:
    """One metadata key, with the type the GGUF convention gives it."""
    if key in _TYPED:
        getattr(w, _TYPED[key])(value)
    elif isinstance(value, bool):
        w.add_bool(key, value)
    elif isinstance(value, int):
        w.add_uint32(key, value)
    elif isinstance(value, float):
        w.add_float32(key, value)
    elif isinstance(value, str):
        w.add_string(key, value)
    else:
        raise TypeError(f"cannot write metadata key {key}")


def write_llama(
    path: str | os.PathLike[str],
    shape: LlamaShape,
    tensors: Mapping[str, np.ndarray],
    tokenizer: Mapping[str, Any],
    *,
    name: str,
    qtype: gguf.GGMLQuantizationType = gguf.GGMLQuantizationType.F32,
    architecture: str = "llama",
    metadata: Mapping[str, Any] | None = None,
    store_as: Mapping[str, type] | None = None,
) -> Path:
    """Write the file; ``metadata`` adds keys (``general.description``,
    ``general.license``...). ``store_as`` keeps named tensors in another numpy
    dtype as they are (tests use it to make a file llama.cpp cannot run)."""
    path = Path(path)
    w = gguf.GGUFWriter(str(path), architecture)
    w.add_name(name)
    w.add_context_length(shape.context_length)
    w.add_embedding_length(shape.n_embd)
    w.add_block_count(shape.n_layer)
    w.add_feed_forward_length(shape.n_ff)
    w.add_head_count(shape.n_head)
    w.add_head_count_kv(shape.n_head_kv)
    w.add_rope_dimension_count(shape.head_dim)
    w.add_layer_norm_rms_eps(shape.norm_eps)
    w.add_rope_freq_base(shape.rope_theta)
    w.add_file_type(int(_FILE_TYPES[qtype]))
    w.add_vocab_size(shape.n_vocab)
    for key, value in (metadata or {}).items():
        add_kv(w, key, value)
    for key, value in tokenizer.items():
        add_kv(w, key, value)
    for tname, tensor in tensors.items():
        array: np.ndarray = np.ascontiguousarray(
            tensor, dtype=(store_as or {}).get(tname, np.float32)
        )
        matrix = array.ndim == 2 and not tname.endswith("norm.weight")
        if matrix and qtype != gguf.GGMLQuantizationType.F32 and array.dtype == np.float32:
            if qtype == gguf.GGMLQuantizationType.F16:
                w.add_tensor(tname, array.astype(np.float16))
            else:
                w.add_tensor(tname, gguf.quants.quantize(array, qtype), raw_dtype=qtype)
        else:
            w.add_tensor(tname, array)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def tensor_names(n_layer: int) -> list[str]:
    """Every tensor of a llama model, in the order they are written."""
    names = ["token_embd.weight"]
    for i in range(n_layer):
        b = f"blk.{i}."
        names += [
            b + part + ".weight"
            for part in (
                "attn_norm",
                "attn_q",
                "attn_k",
                "attn_v",
                "attn_output",
                "ffn_norm",
                "ffn_gate",
                "ffn_up",
                "ffn_down",
            )
        ]
    return [*names, "output_norm.weight", "output.weight"]
