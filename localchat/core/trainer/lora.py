"""LoRA: low-rank adapters on a frozen model, and their GGUF files.

A LoRA adapter adds to a frozen weight matrix ``W`` (``[out, in]``) the
product of two small ones: ``W x + (alpha / rank) * B (A x)``, ``A`` being
``[rank, in]`` (random at first) and ``B`` ``[out, rank]`` (zero at first, so
training starts from the base model exactly). Only ``A`` and ``B`` learn.

The adapter file is the one llama.cpp loads (``llama_adapter_lora_init``):
``general.type = adapter``, ``adapter.type = lora``, ``adapter.lora.alpha``,
and for each adapted matrix ``blk.N.<name>.weight.lora_a`` (``[rank, in]`` in
numpy's order, ggml's ``ne = [in, rank]``) and ``.lora_b`` (``[out, rank]``).
llama.cpp computes ``scale * alpha / rank * B (A x)``, ``scale`` being the
user's adapter scale: the same sum as :class:`LoRALinear`. No Q/K conversion
is needed: the base's weights were read in llama.cpp's own layout.

Metadata written beside: the base model's name, file name and sha256 (an
adapter is applied only to that file), what it was trained on, the training
settings, and the held-out perplexity before and after.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch
from torch import nn

from localchat.core.trainer.gguf_export import add_kv
from localchat.core.trainer.model import GPT, Attention, Block, FeedForward
from localchat.core.trainer.settings import TARGETS, AdapterError, LoRASettings

_MODULES = {"q": "attn.q", "k": "attn.k", "v": "attn.v", "o": "attn.o"} | {
    name: f"ffn.{name}" for name in ("gate", "up", "down")
}
META = "localchat.lora."


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__()
        self.base = base
        base.requires_grad_(False)
        device = base.weight.device
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, device=device))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, device=device))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))  # as PEFT initialises A
        self.scale = alpha / rank
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        h = self.dropout(x).to(self.lora_a.dtype)
        update = (h @ self.lora_a.t()) @ self.lora_b.t()
        return y + (update * self.scale).to(y.dtype)


def _parent(block: Block, target: str) -> tuple[nn.Module, str]:
    owner, attr = _MODULES[target].split(".")
    module = block.attn if owner == "attn" else block.ffn
    assert isinstance(module, Attention | FeedForward)
    return module, attr


def inject(model: GPT, settings: LoRASettings) -> dict[str, LoRALinear]:
    """Wrap the targeted matrices of every block; returns them by the GGUF name
    of the weight they adapt (``blk.3.attn_q.weight``)."""
    model.requires_grad_(False)
    layers: dict[str, LoRALinear] = {}
    for i, block in enumerate(model.blocks):
        assert isinstance(block, Block)
        for target in settings.targets:
            parent, attr = _parent(block, target)
            base = getattr(parent, attr)
            if isinstance(base, LoRALinear):
                raise AdapterError("the model already has adapters")
            wrapped = LoRALinear(base, settings.rank, settings.alpha, settings.dropout)
            setattr(parent, attr, wrapped)
            layers[f"blk.{i}.{TARGETS[target]}.weight"] = wrapped
    return layers


def remove(model: GPT) -> None:
    """Take every adapter off again (the base weights are untouched)."""
    for block in model.blocks:
        assert isinstance(block, Block)
        for target in TARGETS:
            parent, attr = _parent(block, target)
            layer = getattr(parent, attr)
            if isinstance(layer, LoRALinear):
                setattr(parent, attr, layer.base)


def lora_parameters(layers: Mapping[str, LoRALinear]) -> list[nn.Parameter]:
    return [p for layer in layers.values() for p in (layer.lora_a, layer.lora_b)]


def lora_state(layers: Mapping[str, LoRALinear]) -> dict[str, torch.Tensor]:
    """The adapter's weights, by ``NAME.lora_a`` / ``NAME.lora_b`` (copies)."""
    state: dict[str, torch.Tensor] = {}
    for name, layer in layers.items():
        state[name + ".lora_a"] = layer.lora_a.detach().to("cpu", torch.float32).clone()
        state[name + ".lora_b"] = layer.lora_b.detach().to("cpu", torch.float32).clone()
    return state


def load_lora_state(layers: Mapping[str, LoRALinear], state: Mapping[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, layer in layers.items():
            layer.lora_a.copy_(state[name + ".lora_a"])
            layer.lora_b.copy_(state[name + ".lora_b"])


# -- the adapter file ------------------------------------------------------------------------


@dataclass
class Adapter:
    """An adapter file's contents."""

    architecture: str
    alpha: float
    rank: int
    tensors: dict[str, np.ndarray]
    """``blk.N.NAME.weight.lora_a`` / ``.lora_b``, as numpy ``[rank, in]`` / ``[out, rank]``."""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def base_sha256(self) -> str:
        return str(self.metadata.get(META + "base.sha256", ""))

    @property
    def targets(self) -> list[str]:
        names = {n.split(".")[2] for n in self.tensors if n.endswith(".lora_a")}
        return [t for t, gguf_name in TARGETS.items() if gguf_name in names]


def write_adapter(
    path: str | os.PathLike[str],
    *,
    architecture: str,
    settings: LoRASettings,
    state: Mapping[str, torch.Tensor],
    name: str,
    base_name: str,
    base_file: str,
    base_sha256: str,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write the adapter for llama.cpp, atomically (``.part`` then renamed)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    w = gguf.GGUFWriter(str(tmp), architecture)
    try:
        w.add_type(gguf.GGUFType.ADAPTER)
        w.add_string(gguf.Keys.Adapter.TYPE, "lora")
        w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(settings.alpha))
        w.add_name(name)
        w.add_uint32("general.base_model.count", 1)
        w.add_string("general.base_model.0.name", base_name)
        w.add_string(META + "base.file", base_file)
        w.add_string(META + "base.sha256", base_sha256)
        w.add_uint32(META + "rank", settings.rank)
        w.add_string(META + "targets", ",".join(settings.targets))
        w.add_string(META + "settings", json.dumps(asdict(settings)))
        for key, value in (metadata or {}).items():
            add_kv(w, key, value)
        for tname, tensor in state.items():
            w.add_tensor(tname, np.ascontiguousarray(tensor.detach().cpu().numpy(), np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        os.replace(tmp, path)
    except OSError as exc:
        w.close()
        tmp.unlink(missing_ok=True)
        raise AdapterError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def _scalar(field_: Any) -> Any:
    kind = field_.types[0] if field_.types else None
    if kind == gguf.GGUFValueType.STRING:
        return bytes(field_.parts[field_.data[0]]).decode("utf-8", "replace")
    if kind == gguf.GGUFValueType.ARRAY:
        return None
    return field_.parts[field_.data[0]].tolist()[0]


def read_adapter(path: str | os.PathLike[str]) -> Adapter:
    """Read an adapter file (ours or another tool's) and check it is one."""
    path = Path(path)
    try:
        reader = gguf.GGUFReader(str(path))
    except FileNotFoundError:
        raise AdapterError(f"no adapter at {path}") from None
    except (ValueError, OSError) as exc:
        raise AdapterError(f"{path.name} is not a GGUF file ({exc})") from None
    meta = {name: _scalar(f) for name, f in reader.fields.items() if not name.startswith("GGUF.")}
    if meta.get("general.type") != "adapter" or meta.get("adapter.type") != "lora":
        raise AdapterError(f"{path.name} is not a LoRA adapter")
    tensors: dict[str, np.ndarray] = {}
    for t in reader.tensors:
        qtype = gguf.GGMLQuantizationType(int(t.tensor_type))
        values = gguf.quants.dequantize(t.data, qtype)
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        tensors[t.name] = np.array(values, dtype=np.float32).reshape(shape)
    ranks = {v.shape[0] for k, v in tensors.items() if k.endswith(".lora_a")}
    if len(ranks) != 1:
        raise AdapterError(f"{path.name} has tensors of several ranks; only one rank is supported")
    return Adapter(
        architecture=str(meta.get("general.architecture", "")),
        alpha=float(meta.get("adapter.lora.alpha") or 0.0),
        rank=ranks.pop(),
        tensors=tensors,
        metadata=meta,
    )


def apply_adapter(model: GPT, adapter: Adapter, scale: float = 1.0) -> dict[str, LoRALinear]:
    """Put a file's adapter onto our model, as llama.cpp applies it (with the
    user's ``scale``): to compare the two, or to go on training it."""
    targets = tuple(adapter.targets)
    # llama.cpp scales by alpha / rank, or by 1 when the file has no alpha
    alpha = adapter.alpha if adapter.alpha else float(adapter.rank)
    layers = inject(model, LoRASettings(adapter.rank, alpha * scale, 0.0, targets))
    missing = [n for n in layers if n + ".lora_a" not in adapter.tensors]
    if missing:
        remove(model)
        raise AdapterError(f"the adapter has no {missing[0]}: it adapts only some layers")
    with torch.no_grad():
        for name, layer in layers.items():
            a, b = adapter.tensors[name + ".lora_a"], adapter.tensors[name + ".lora_b"]
            if a.shape != tuple(layer.lora_a.shape) or b.shape != tuple(layer.lora_b.shape):
                remove(model)
                raise AdapterError(f"the adapter's {name} does not fit this model (another base?)")
            layer.lora_a.copy_(torch.from_numpy(a))
            layer.lora_b.copy_(torch.from_numpy(b))
    return layers
