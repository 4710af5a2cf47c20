"""``localchat info``: what a model (or LoRA adapter) file is, from its
header, without loading it; for a model, the memory it needs at a context."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from localchat.cli import output
from localchat.cli.usage import add_ctx, add_json
from localchat.core.engine.gguf_info import read_model_info
from localchat.core.models import adapters, library
from localchat.core.params import effective_ctx
from localchat.core.units import human_count, human_size


def add_parser(sub: Any) -> None:
    info = sub.add_parser(
        "info",
        help="what a model file is, without loading it",
        description="Show a GGUF file's architecture, size, quantization, trained context and "
        "chat template, and estimate the memory it needs at a context size.",
    )
    info.add_argument("model", help="a .gguf file or the name of an installed model")
    add_ctx(info, "the memory estimate")
    add_json(info, "a JSON object")


def run(args: argparse.Namespace) -> int:
    info = read_model_info(library.resolve(args.model))
    if info.file_kind == "adapter":
        return _adapter(info.path, as_json=args.json)
    n_ctx = effective_ctx(args.ctx, info.context_length)
    kv, total = info.kv_cache_bytes(n_ctx), info.ram_estimate(n_ctx)
    facts = {
        "path": str(info.path),
        "name": info.name,
        "kind": info.file_kind,
        "architecture": info.architecture,
        "parameters": info.parameter_count,
        "quantization": info.quantization,
        "file_size": info.file_size,
        "trained_context": info.context_length,
        "has_chat_template": info.has_chat_template,
        "context": n_ctx,
        "ram_estimate": total,
        "ram_weights": info.weights_bytes,
        "ram_kv_cache": kv,
    }
    template = "yes" if info.has_chat_template else "no (ChatML is used)"
    rows = [
        ("name", info.name),
        ("file", f"{info.path} ({human_size(info.file_size)})"),
        ("architecture", info.architecture + ("" if info.file_kind == "model" else " adapter")),
        ("parameters", human_count(info.parameter_count)),
        ("quantization", info.quantization),
        ("trained context", f"{info.context_length:,} tokens"),
        ("chat template", template),
        (
            f"memory at {n_ctx:,}",
            f"~{human_size(total)} (weights {human_size(info.weights_bytes)}, "
            f"KV cache {human_size(kv)}, buffers {human_size(total - kv - info.weights_bytes)})",
        ),
    ]
    return output.emit(facts, as_json=args.json, lines=lambda: output.labelled(rows, 18))


def _adapter(path: Path, *, as_json: bool) -> int:
    a = adapters.read(path)
    facts = {
        "path": str(a.path),
        "name": a.name,
        "kind": "adapter",
        "architecture": a.architecture,
        "rank": a.rank,
        "alpha": a.alpha,
        "targets": list(a.targets),
        "base_name": a.base_name,
        "base_file": a.base_file,
        "base_sha256": a.base_sha256,
        "data": a.data,
        "steps": a.steps,
        "heldout_loss_before": a.loss_before,
        "heldout_loss_after": a.loss_after,
        "settings": a.settings,
    }
    return output.emit(facts, as_json=as_json, lines=lambda: output.labelled(_rows(a), 21))


def _rows(a: adapters.AdapterInfo) -> list[tuple[str, str]]:
    rows = [
        ("name", a.name),
        ("file", f"{a.path} ({human_size(a.path.stat().st_size)})"),
        ("kind", f"LoRA adapter for {a.architecture} models"),
        ("base model", f"{a.base_name} ({a.base_file})" if a.base_file else "not recorded"),
        (
            "rank, alpha",
            f"{a.rank}, {a.alpha:g}" + (f" on {','.join(a.targets)}" if a.targets else ""),
        ),
    ]
    if a.data:
        rows.append(("trained on", f"{a.data} ({a.steps:,} steps)"))
    if a.loss_before is not None and a.loss_after is not None:
        rows.append(
            (
                "held-out perplexity",
                f"{math.exp(a.loss_before):.3f} before, {math.exp(a.loss_after):.3f} after",
            )
        )
    return rows
