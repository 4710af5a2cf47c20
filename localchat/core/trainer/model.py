"""A llama-architecture decoder in PyTorch, the same network llama.cpp runs.

Token embeddings, then ``n_layer`` blocks of (RMSNorm, grouped-query
self-attention with rotary position embeddings, RMSNorm, SwiGLU feed-forward),
each wrapped in a residual connection, then a final RMSNorm and the output
projection to the vocabulary. Written out so that each step can be read (and
changed) in one place.

Two details make the export exact rather than close:

- RoPE rotates *adjacent* pairs of each head's dimensions (``x[2i]``,
  ``x[2i+1]``), as llama.cpp does for the llama architecture, so the query
  and key weights are written as they are (a model converted from Hugging Face
  needs its q/k rows permuted; ours does not).
- Query head ``h`` attends with key/value head ``h // (n_head / n_head_kv)``,
  llama.cpp's grouping.

The same network also runs the GGUF models people download, for fine-tuning
(:mod:`localchat.core.trainer.base`): the few ways those architectures differ
are switches of :class:`Config` — ``rope_neox`` (Qwen's RoPE rotates
``x[i]`` with ``x[i + head_dim/2]``), ``qkv_bias`` (Qwen2's query, key and
value biases), ``qk_norm`` (Qwen3's RMSNorm of each head's query and key),
``tied_output`` (no output matrix: the embeddings are reused), a linear RoPE
scale, and per-pair RoPE frequency factors (Llama 3.1's ``rope_freqs``).

Needs PyTorch (the ``train`` extra).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from localchat.core.trainer.gguf_export import LlamaShape
from localchat.core.trainer.options import MODEL_PRESETS


@dataclass(frozen=True)
class Config:
    vocab_size: int
    n_ctx: int = 256
    """The longest sequence trained on (and the context written to the GGUF)."""
    n_embd: int = 128
    n_layer: int = 4
    n_head: int = 4
    n_head_kv: int = 2
    n_ff: int = 384
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    arch: str = "llama"
    rope_neox: bool = False
    """Rotate ``x[i]`` with ``x[i + head_dim/2]`` (llama.cpp's NEOX mode) rather
    than adjacent pairs."""
    qkv_bias: bool = False
    qk_norm: bool = False
    tied_output: bool = False
    rope_freq_scale: float = 1.0
    """Positions are multiplied by this (linear RoPE scaling: 1 / factor)."""
    head_dim_override: int = 0
    """A head size other than ``n_embd / n_head`` (0: that)."""

    def __post_init__(self) -> None:
        if self.n_head % self.n_head_kv or (
            not self.head_dim_override and self.n_embd % self.n_head
        ):
            raise ValueError("n_embd must divide into n_head heads, n_head into n_head_kv groups")
        if self.head_dim % 2:
            raise ValueError("the head size must be even (RoPE rotates pairs)")

    @property
    def head_dim(self) -> int:
        return self.head_dim_override or self.n_embd // self.n_head

    def shape(self) -> LlamaShape:
        return LlamaShape(
            n_vocab=self.vocab_size,
            n_embd=self.n_embd,
            n_layer=self.n_layer,
            n_head=self.n_head,
            n_head_kv=self.n_head_kv,
            n_ff=self.n_ff,
            context_length=self.n_ctx,
            rope_theta=self.rope_theta,
            norm_eps=self.norm_eps,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS = MODEL_PRESETS
"""The model sizes of ``train scratch --preset`` (declared in :mod:`.options`)."""


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(
    cfg: Config,
    n: int,
    device: torch.device | None = None,
    freq_factors: torch.Tensor | None = None,
) -> torch.Tensor:
    """cos and sin of each position's angle for each pair: ``[2, n, head_dim/2]``.

    Computed as llama.cpp does: pair ``i`` turns by ``theta_i = base^(-2i/d)``
    per position (divided by ``freq_factors[i]`` where a model has them), the
    position scaled by ``rope_freq_scale``."""
    pairs = torch.arange(0, cfg.head_dim, 2, dtype=torch.float64, device=device)
    freqs = cfg.rope_theta ** (-pairs / cfg.head_dim)
    if freq_factors is not None:
        freqs = freqs / freq_factors.to(device=device, dtype=torch.float64)
    positions = torch.arange(n, dtype=torch.float64, device=device) * cfg.rope_freq_scale
    angles = torch.outer(positions, freqs)
    return torch.stack([angles.cos(), angles.sin()]).to(torch.float32)


def apply_rope(x: torch.Tensor, table: torch.Tensor, neox: bool = False) -> torch.Tensor:
    """Rotate pairs of ``x`` (``[batch, heads, n, head_dim]``): adjacent ones,
    or with ``neox`` each ``x[i]`` with ``x[i + head_dim/2]``."""
    cos, sin = table[0].to(x.dtype), table[1].to(x.dtype)
    if neox:
        first, second = x.chunk(2, dim=-1)
        return torch.cat([first * cos - second * sin, first * sin + second * cos], dim=-1)
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)


class Attention(nn.Module):
    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        kv = cfg.n_head_kv * cfg.head_dim
        width = cfg.n_head * cfg.head_dim
        self.q = nn.Linear(cfg.n_embd, width, bias=cfg.qkv_bias)
        self.k = nn.Linear(cfg.n_embd, kv, bias=cfg.qkv_bias)
        self.v = nn.Linear(cfg.n_embd, kv, bias=cfg.qkv_bias)
        self.o = nn.Linear(width, cfg.n_embd, bias=False)
        self.q_norm = RMSNorm(cfg.head_dim, cfg.norm_eps) if cfg.qk_norm else None
        self.k_norm = RMSNorm(cfg.head_dim, cfg.norm_eps) if cfg.qk_norm else None

    def forward(self, x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        c = self.cfg
        q = self.q(x).view(b, n, c.n_head, c.head_dim)
        k = self.k(x).view(b, n, c.n_head_kv, c.head_dim)
        v = self.v(x).view(b, n, c.n_head_kv, c.head_dim).transpose(1, 2)
        if self.q_norm is not None and self.k_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q = apply_rope(q.transpose(1, 2), rope, c.rope_neox)
        k = apply_rope(k.transpose(1, 2), rope, c.rope_neox)
        group = c.n_head // c.n_head_kv
        k = k.repeat_interleave(group, dim=1)  # head h uses kv head h // group
        v = v.repeat_interleave(group, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o(y.transpose(1, 2).reshape(b, n, c.n_head * c.head_dim))


class FeedForward(nn.Module):
    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.gate = nn.Linear(cfg.n_embd, cfg.n_ff, bias=False)
        self.up = nn.Linear(cfg.n_embd, cfg.n_ff, bias=False)
        self.down = nn.Linear(cfg.n_ff, cfg.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.ffn = FeedForward(cfg)

    def forward(self, x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), rope)
        return x + self.ffn(self.ffn_norm(x))


class GPT(nn.Module):
    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.output = None if cfg.tied_output else nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.register_buffer("rope", rope_tables(cfg, cfg.n_ctx), persistent=False)
        self.apply(self._init)
        # GPT-2's scaled init of the projections into the residual stream.
        for block in self.blocks:
            assert isinstance(block, Block)
            for proj in (block.attn.o, block.ffn.down):
                nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits for every position of ``tokens`` (``[batch, n]``, n <= n_ctx)."""
        return self.head(self.hidden(tokens))

    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """The final hidden states (before the output norm)."""
        n = tokens.shape[1]
        if n > self.cfg.n_ctx:
            raise ValueError(f"{n} tokens is more than the context of {self.cfg.n_ctx}")
        rope: torch.Tensor = self.rope
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x, rope[:, :n])
        return x

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Logits from hidden states."""
        x = self.norm(x)
        if self.output is None:
            return F.linear(x, self.embed.weight)
        return self.output(x)

    def set_context(self, n_ctx: int, freq_factors: torch.Tensor | None = None) -> None:
        """Recompute the RoPE table for sequences of up to ``n_ctx`` tokens."""
        self.cfg = replace(self.cfg, n_ctx=n_ctx)
        for block in self.blocks:
            assert isinstance(block, Block)
            block.attn.cfg = self.cfg
        device = self.embed.weight.device
        self.rope = rope_tables(
            self.cfg, n_ctx, device if device.type != "meta" else None, freq_factors
        )

    def loss(self, tokens: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of predicting each next token."""
        logits = self(tokens[:, :-1])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))

    def gguf_tensors(self) -> dict[str, np.ndarray]:
        """The weights under llama.cpp's names, ``[out, in]`` like PyTorch's."""

        def arr(t: torch.Tensor) -> np.ndarray:
            return t.detach().to(torch.float32).cpu().numpy()

        out = {"token_embd.weight": arr(self.embed.weight)}
        for i, block in enumerate(self.blocks):
            assert isinstance(block, Block)
            b = f"blk.{i}."
            out[b + "attn_norm.weight"] = arr(block.attn_norm.weight)
            out[b + "attn_q.weight"] = arr(block.attn.q.weight)
            out[b + "attn_k.weight"] = arr(block.attn.k.weight)
            out[b + "attn_v.weight"] = arr(block.attn.v.weight)
            out[b + "attn_output.weight"] = arr(block.attn.o.weight)
            out[b + "ffn_norm.weight"] = arr(block.ffn_norm.weight)
            out[b + "ffn_gate.weight"] = arr(block.ffn.gate.weight)
            out[b + "ffn_up.weight"] = arr(block.ffn.up.weight)
            out[b + "ffn_down.weight"] = arr(block.ffn.down.weight)
        out["output_norm.weight"] = arr(self.norm.weight)
        if self.output is not None:
            out["output.weight"] = arr(self.output.weight)
        return out
