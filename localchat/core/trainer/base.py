"""A downloaded GGUF model, read into the trainer's PyTorch network.

Fine-tuning starts from the very file the user chats with: its tensors are
read with the ``gguf`` package and dequantized (every type that package knows:
F32, F16, BF16, Q4_0 to Q8_0, the K-quants and the I-quants) into
:class:`~localchat.core.trainer.model.GPT` in float32 or bfloat16. The
weights stay in the layout llama.cpp computes with, so nothing is permuted:
query and key rows are already in the order llama.cpp's RoPE expects, and an
adapter trained on them is written back in that order.

Supported: the ``llama`` architecture (Llama 1-3, Mistral, and their many
fine-tunes; Llama 3.1's RoPE frequency factors included), ``qwen2`` (query,
key and value biases, NEOX RoPE) and ``qwen3`` (query/key norms, NEOX RoPE).
Anything else is a one-line :class:`BaseModelError`.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch

from localchat.core.engine.gguf_info import read_model_info
from localchat.core.errors import LocalChatError
from localchat.core.models import fingerprint
from localchat.core.trainer.model import GPT, Config


class BaseModelError(LocalChatError):
    """A model that cannot be fine-tuned (yet), and why."""


@dataclass(frozen=True)
class Arch:
    rope_neox: bool
    qkv_bias: bool = False
    qk_norm: bool = False


ARCHITECTURES = {
    "llama": Arch(rope_neox=False),
    "qwen2": Arch(rope_neox=True, qkv_bias=True),
    "qwen3": Arch(rope_neox=True, qk_norm=True),
}

# our module names -> llama.cpp's tensor names in each block
BLOCK_TENSORS = {
    "attn_norm.weight": "attn_norm.weight",
    "attn.q.weight": "attn_q.weight",
    "attn.k.weight": "attn_k.weight",
    "attn.v.weight": "attn_v.weight",
    "attn.o.weight": "attn_output.weight",
    "ffn_norm.weight": "ffn_norm.weight",
    "ffn.gate.weight": "ffn_gate.weight",
    "ffn.up.weight": "ffn_up.weight",
    "ffn.down.weight": "ffn_down.weight",
}
BIAS_TENSORS = {
    "attn.q.bias": "attn_q.bias",
    "attn.k.bias": "attn_k.bias",
    "attn.v.bias": "attn_v.bias",
}
QK_NORM_TENSORS = {
    "attn.q_norm.weight": "attn_q_norm.weight",
    "attn.k_norm.weight": "attn_k_norm.weight",
}


@dataclass
class BaseModel:
    """A GGUF model in PyTorch, frozen, ready for adapters."""

    path: Path
    name: str
    architecture: str
    config: Config
    model: GPT
    tokenizer_keys: dict[str, Any]
    context_length: int
    """The context the model was trained for (the GGUF's)."""
    freq_factors: torch.Tensor | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    _sha256: str | None = None

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            self._sha256 = fingerprint.sha256(self.path)
        return self._sha256

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def set_context(self, n_ctx: int) -> None:
        self.model.set_context(n_ctx, self.freq_factors)
        self.config = self.model.cfg


def check(path: str | os.PathLike[str]) -> tuple[Any, Config]:
    """Read the file's metadata and say whether it can be fine-tuned: its info
    and the network's shape (``n_ctx`` 0 until chosen). Reads no tensors."""
    info = read_model_info(path)
    name = info.path.name
    if info.file_kind == "adapter":
        raise BaseModelError(f"{name} is a LoRA adapter, not a model to fine-tune")
    arch = info.architecture
    if arch not in ARCHITECTURES:
        supported = ", ".join(ARCHITECTURES)
        raise BaseModelError(
            f"{name} is a {arch} model: fine-tuning supports {supported} models, not {arch} yet"
        )
    meta = info.metadata

    def key(suffix: str, default: Any = None) -> Any:
        return meta.get(f"{arch}.{suffix}", default)

    if key("expert_count", 0):
        raise BaseModelError(
            f"{name} is a mixture-of-experts model: not supported for fine-tuning yet"
        )
    scaling = str(key("rope.scaling.type", "none") or "none")
    factor = float(key("rope.scaling.factor", 0.0) or key("rope.scale_linear", 0.0) or 1.0)
    if scaling not in ("none", "linear") and factor != 1.0:
        raise BaseModelError(
            f"{name} uses {scaling} RoPE scaling: not supported for fine-tuning yet"
        )
    n_embd, n_head = int(key("embedding_length")), int(key("attention.head_count"))
    n_head_kv = key("attention.head_count_kv", n_head)
    if isinstance(n_head_kv, list):
        raise BaseModelError(
            f"{name} varies its key/value heads by layer: not supported for fine-tuning yet"
        )
    head_dim = int(key("attention.key_length", n_embd // n_head))
    if int(key("attention.value_length", head_dim)) != head_dim:
        raise BaseModelError(
            f"{name} has keys and values of different sizes: not supported for fine-tuning yet"
        )
    rope_dims = int(key("rope.dimension_count", head_dim))
    if rope_dims != head_dim:
        raise BaseModelError(
            f"{name} rotates only part of each head (partial RoPE): not supported yet"
        )
    n_ff = key("feed_forward_length")
    if isinstance(n_ff, list):
        raise BaseModelError(
            f"{name} varies its feed-forward size by layer: not supported for fine-tuning yet"
        )
    tensors = {t.name for t in info.tensors}
    a = ARCHITECTURES[arch]
    config = Config(
        vocab_size=int(info.n_vocab),
        n_ctx=1,
        n_embd=n_embd,
        n_layer=int(key("block_count")),
        n_head=n_head,
        n_head_kv=int(n_head_kv),
        n_ff=int(n_ff),
        rope_theta=float(key("rope.freq_base", 10000.0)),
        norm_eps=float(key("attention.layer_norm_rms_epsilon", 1e-5)),
        arch=arch,
        rope_neox=a.rope_neox,
        qkv_bias=a.qkv_bias,
        qk_norm=a.qk_norm,
        tied_output="output.weight" not in tensors,
        rope_freq_scale=1.0 / factor if scaling == "linear" or key("rope.scale_linear") else 1.0,
        head_dim_override=head_dim if head_dim * n_head != n_embd else 0,
    )
    return info, config


def _array(tensor: Any) -> np.ndarray:
    """A GGUF tensor as float32 in numpy's ``[rows, cols]`` order."""
    qtype = gguf.GGMLQuantizationType(int(tensor.tensor_type))
    try:
        values = gguf.quants.dequantize(tensor.data, qtype)
    except NotImplementedError:
        raise BaseModelError(
            f"tensor {tensor.name} is stored as {qtype.name}, which cannot be read for "
            "fine-tuning yet"
        ) from None
    shape = tuple(int(d) for d in reversed(tensor.shape.tolist()))
    return np.asarray(values, dtype=np.float32).reshape(shape)


def _release(reader: Any) -> None:
    """Let go of the file's pages read so far: they are copied, and a 7B model
    would otherwise sit in memory twice (the mapped file and the weights) at the
    end of loading. Where the platform has no ``madvise``, the pages stay
    until the reader is closed."""
    mapped = getattr(reader.data, "_mmap", None)
    advice = getattr(mmap, "MADV_DONTNEED", None)
    if mapped is not None and advice is not None:
        with contextlib.suppress(OSError, ValueError):
            mapped.madvise(advice)


def load(
    path: str | os.PathLike[str],
    *,
    n_ctx: int = 512,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> BaseModel:
    """Read the model at ``path`` into PyTorch, its weights frozen, with RoPE
    tables for sequences of up to ``n_ctx`` tokens."""
    info, config = check(path)
    name = info.path.name
    reader = gguf.GGUFReader(str(info.path))
    tensors = {t.name: t for t in reader.tensors}
    config = replace(config, n_ctx=n_ctx)
    with torch.device("meta"):
        model = GPT(config)
    names = {"embed.weight": "token_embd.weight", "norm.weight": "output_norm.weight"}
    if not config.tied_output:
        names["output.weight"] = "output.weight"
    parts = dict(BLOCK_TENSORS)
    if config.qkv_bias:
        parts.update(BIAS_TENSORS)
    if config.qk_norm:
        parts.update(QK_NORM_TENSORS)
    for i in range(config.n_layer):
        names.update({f"blocks.{i}.{ours}": f"blk.{i}.{theirs}" for ours, theirs in parts.items()})
    expected = dict(model.state_dict())
    state: dict[str, torch.Tensor] = {}
    for ours, theirs in names.items():
        if theirs not in tensors:
            raise BaseModelError(
                f"{name} has no tensor {theirs}: not a {config.arch} model we can read"
            )
        values = _array(tensors[theirs])
        want = tuple(expected[ours].shape)
        if values.shape != want:
            raise BaseModelError(
                f"{name}: tensor {theirs} is {list(values.shape)}, expected {list(want)}"
            )
        state[ours] = torch.tensor(values, dtype=dtype, device=device)
        del values
        _release(reader)
    model.load_state_dict(state, assign=True)
    freq_factors = None
    if "rope_freqs.weight" in tensors:
        freq_factors = torch.from_numpy(_array(tensors["rope_freqs.weight"]).reshape(-1).copy())
    model.set_context(n_ctx, freq_factors)
    model.requires_grad_(False)
    model.eval()
    keys = read_model_info(info.path, full_arrays=("tokenizer.",)).metadata
    tokenizer_keys = {k: v for k, v in keys.items() if k.startswith("tokenizer.")}
    if "tokenizer.ggml.tokens" not in tokenizer_keys:
        raise BaseModelError(f"{name} has no tokenizer")
    return BaseModel(
        path=info.path,
        name=str(info.metadata.get("general.name") or info.path.stem),
        architecture=config.arch,
        config=model.cfg,
        model=model,
        tokenizer_keys=tokenizer_keys,
        context_length=int(info.context_length or n_ctx),
        freq_factors=freq_factors,
        metadata=dict(info.metadata),
    )
