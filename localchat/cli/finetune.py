"""``localchat train lora``: fine-tune an installed model on your own texts or chats.

Imported only when the command runs; the trainer (PyTorch) only once the
arguments are known to be good.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from localchat.core.errors import LocalChatError
from localchat.core.models import library

PRESET_NAMES = ("quick", "balanced", "thorough")


def add_arguments(kinds: Any) -> None:
    lora = kinds.add_parser(
        "lora",
        help="fine-tune a model you have (GGUF) on your texts or chats; writes a LoRA adapter",
        description="Fine-tune a llama-family GGUF model (Llama, Mistral, Qwen2, Qwen3) with "
        "LoRA on text files or folders (continued training: style and knowledge) and chat "
        'JSONL ({"messages": [...]} per line: only the assistant replies are learned), or on '
        "your own chats. Writes an adapter llama.cpp applies: chat with it with "
        "'localchat chat -m BASE --lora OUT'. A checkpoint is kept next to the output "
        "(OUT.ckpt): run the same command again to go on from it.",
    )
    lora.add_argument("--base", required=True, metavar="MODEL", help="an installed model or .gguf")
    lora.add_argument(
        "--data", nargs="+", default=[], metavar="PATH", help="text files/folders, chat .jsonl"
    )
    lora.add_argument(
        "--chats",
        nargs="+",
        metavar="ID",
        help="train on these chats from the chat store ('all' for every chat)",
    )
    lora.add_argument("--out", required=True, metavar="ADAPTER.gguf", help="where to write it")
    lora.add_argument(
        "--preset",
        choices=PRESET_NAMES,
        default="balanced",
        help="quick (rank 8, 1 epoch), balanced (rank 16, 2 epochs) or thorough "
        "(rank 32, 4 epochs); the options below override it",
    )
    lora.add_argument("--rank", type=int, help="LoRA rank")
    lora.add_argument("--alpha", type=float, help="LoRA alpha (the update is scaled by alpha/rank)")
    lora.add_argument("--dropout", type=float, help="LoRA dropout (0.05)")
    lora.add_argument(
        "--targets", help="adapted matrices, comma-separated: q,k,v,o,gate,up,down (all)"
    )
    lora.add_argument("--epochs", type=float, help="passes over the data")
    lora.add_argument("--steps", type=int, help="optimiser steps (instead of --epochs)")
    lora.add_argument("--lr", type=float, help="peak learning rate")
    lora.add_argument("--batch", type=int, default=4, help="sequences per micro-batch (4)")
    lora.add_argument("--accum", type=int, default=1, help="micro-batches per step (1)")
    lora.add_argument("--ctx", type=int, default=512, help="longest sequence, in tokens (512)")
    lora.add_argument(
        "--patience", type=int, default=3, help="evaluations without progress before stopping (3)"
    )
    lora.add_argument("--eval-every", type=int, default=0, help="steps between evaluations")
    lora.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto")
    lora.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    lora.add_argument("--seed", type=int, default=0)
    lora.add_argument("--name", help="the adapter's name (default: the output's file name)")
    lora.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    lora.add_argument("--json", action="store_true", help="JSON lines on stdout")


def _settings(args: argparse.Namespace, ft: Any, lora_mod: Any) -> tuple[Any, Any]:
    preset_lora, preset_run = ft.PRESETS[args.preset]
    lora_fields: dict[str, Any] = {}
    if args.rank is not None:
        lora_fields["rank"] = args.rank
        if args.alpha is None:
            lora_fields["alpha"] = 2.0 * args.rank
    if args.alpha is not None:
        lora_fields["alpha"] = args.alpha
    if args.dropout is not None:
        lora_fields["dropout"] = args.dropout
    if args.targets:
        lora_fields["targets"] = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    lora = lora_mod.LoRASettings(**{**preset_lora.__dict__, **lora_fields})
    run: dict[str, Any] = dict(preset_run)
    if args.epochs is not None:
        run["epochs"] = args.epochs
    if args.lr is not None:
        run["lr"] = args.lr
    if args.steps is not None:
        if args.steps < 1:
            raise LocalChatError("--steps must be at least 1")
        run["steps"] = args.steps
    settings = ft.FinetuneSettings(
        ctx=args.ctx,
        batch=args.batch,
        accum=args.accum,
        patience=args.patience,
        eval_every=args.eval_every or 25,
        dtype=args.dtype,
        device=args.device,
        seed=args.seed,
        **run,
    )
    return lora, settings


def _chats(ids: list[str], folder: Path) -> Path:
    """The chosen chats from the store, as chat JSONL in ``folder``."""
    from localchat.core.chat.store import ChatStore
    from localchat.core.trainer import chat_data

    chosen: list[int] | None = None
    if ids != ["all"]:
        try:
            chosen = [int(i) for i in ids]
        except ValueError:
            raise LocalChatError("--chats takes chat ids (numbers) or 'all'") from None
    with ChatStore() as store:
        known = {c.id for c in store.list_chats()}
        missing = [i for i in chosen or [] if i not in known]
        if missing:
            raise LocalChatError(f"no chat {missing[0]} in the chat store")
        conversations = chat_data.from_store(store, chosen)
    if not conversations:
        raise LocalChatError("those chats have no finished replies to learn from")
    return chat_data.write_jsonl(conversations, folder / "my-chats.jsonl")


def run_lora(args: argparse.Namespace, trainer_check: Any) -> int:
    trainer_check()
    from localchat.cli.train import _Bar
    from localchat.core.trainer import finetune as ft
    from localchat.core.trainer import lora as lora_mod
    from localchat.core.trainer.tokenizer import GGUFTokenizer

    out = Path(args.out)
    if out.suffix.lower() != ".gguf":
        raise LocalChatError("--out must name a .gguf file")
    if not args.data and not args.chats:
        raise LocalChatError("give --data (text files, folders, chat .jsonl) or --chats")
    base_path = library.resolve(args.base)
    lora, settings = _settings(args, ft, lora_mod)
    need = ft.plan(base_path, lora, settings)
    checkpoint = out.with_suffix(".ckpt")
    with tempfile.TemporaryDirectory(prefix="localchat-lora-") as tmp:
        paths: list[str | Path] = list(args.data)
        if args.chats:
            paths.append(_chats(args.chats, Path(tmp)))
        tokenizer = GGUFTokenizer(base_path)  # the data first: its mistakes show at once
        try:
            template = ft.template_for(tokenizer.keys)
            dataset = ft.prepare(paths, tokenizer, template, settings.ctx)
        finally:
            tokenizer.close()
    free = _free(need.device)
    note = f"; {free / ft.GB:.1f} GB free" if free else ""
    _say(args, f"fine-tuning {base_path.name} on {need.device}: about {need.describe()}{note}")
    base = ft.load_base(base_path, settings, need)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.restart:
        checkpoint.unlink(missing_ok=True)
    if checkpoint.exists():
        run = ft.resume(checkpoint, base, settings, dataset)
        _say(args, f"going on from {checkpoint} (step {run.step})")
    else:
        run = ft.new_run(base, lora, settings, dataset)
    report = dataset.report
    _say(
        args,
        f"data: {report['train_examples']} training and {report['heldout_examples']} held-out "
        f"sequences, {report['learned_tokens']:,} tokens to learn; {run.total_steps} steps",
    )
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda _s, _f: stop.set())
    bar = _Bar(sys.stderr, json_out=sys.stdout if args.json else None)
    try:
        ft.train(run, dataset, checkpoint=checkpoint, on_progress=bar.show, should_stop=stop.is_set)
    finally:
        signal.signal(signal.SIGINT, previous)
        bar.close()
    if stop.is_set():
        print(
            f"stopped at step {run.step} of {run.total_steps}; the checkpoint {checkpoint} is "
            "saved: run the same command again to go on",
            file=sys.stderr,
        )
        return 130
    path = ft.export(run, out, name=args.name or out.stem)
    measured = ft.measure(base_path, path, dataset.heldout, settings.ctx)
    summary = {
        "adapter": str(path),
        "base": str(base_path),
        "checkpoint": str(checkpoint),
        "steps": run.step,
        "stopped_early": run.stopped_early,
        "rank": lora.rank,
        "alpha": lora.alpha,
        "heldout_loss_before": _round(run.first_heldout),
        "heldout_loss_after": _round(run.best_loss),
        "perplexity_before": round(measured.before, 4),
        "perplexity_after": round(measured.after, 4),
        "heldout_tokens": measured.tokens,
        "data": report,
    }
    if args.json:
        print(json.dumps({"done": summary}, ensure_ascii=False))
    else:
        if run.stopped_early:
            print(f"stopped early at step {run.step}: the held-out loss no longer improved")
        print(
            f"held-out perplexity (llama.cpp, {measured.tokens:,} tokens): "
            f"{measured.before:.3f} without the adapter, {measured.after:.3f} with it"
        )
        print(f"wrote {path}; chat with it: localchat chat -m {args.base} --lora {path}")
    return 0


def _round(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(value, 5)


def _free(device: str) -> int:
    from localchat.core import hardware

    found = hardware.gpu_memory() if device == "cuda" else hardware.memory()
    return found[1] if found else 0


def _say(args: argparse.Namespace, line: str) -> None:
    if args.json:
        print(json.dumps({"info": line}, ensure_ascii=False), flush=True)
    else:
        print(line, file=sys.stderr, flush=True)
