"""``localchat train lora``: fine-tune an installed model on your own texts or chats.

Imported only when the command runs; the trainer (PyTorch) only once the
arguments are known to be good.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path
from typing import Any

from localchat.cli import progress
from localchat.core.errors import LocalChatError
from localchat.core.models import library
from localchat.core.trainer import options
from localchat.core.trainer.progress import LoraSummary


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
    options.add_cli_arguments(lora, "lora")


def _chats(ids: list[str], folder: Path) -> tuple[Path, str]:
    """The chosen chats from the store, as chat JSONL in ``folder``, and which
    of them gave nothing to learn and why, in one line ('' when all gave)."""
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
        found = chat_data.read_store(store, chosen)
    if not found.conversations:
        why = f": {found.note}" if found.note else ""
        raise LocalChatError(f"those chats have no finished replies to learn from{why}")
    return chat_data.write_jsonl(found.conversations, folder / "my-chats.jsonl"), found.note


def run_lora(args: argparse.Namespace, trainer_check: Any) -> int:
    trainer_check()
    from localchat.core.trainer import finetune as ft
    from localchat.core.trainer.tokenizer import GGUFTokenizer

    out = Path(args.out)
    if out.suffix.lower() != ".gguf":
        raise LocalChatError("--out must name a .gguf file")
    if not args.data and not args.chats:
        raise LocalChatError("give --data (text files, folders, chat .jsonl) or --chats")
    base_path = library.resolve(args.base)
    lora, settings = options.lora_settings(vars(args))
    need = ft.plan(base_path, lora, settings)
    checkpoint = out.with_suffix(".ckpt")
    with tempfile.TemporaryDirectory(prefix="localchat-lora-") as tmp:
        paths: list[str | Path] = list(args.data)
        notes: list[str] = []
        if args.chats:
            exported, note = _chats(args.chats, Path(tmp))
            paths.append(exported)
            notes += [note] if note else []
        tokenizer = GGUFTokenizer(base_path)  # the data first: its mistakes show at once
        try:
            template = ft.template_for(tokenizer.keys)
            dataset = ft.prepare(paths, tokenizer, template, settings.ctx, notes=notes)
        finally:
            tokenizer.close()
    for line in notes:  # with too little data left, the error names them instead
        _say(args, line)
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
    with progress.training(args.json) as (stop, bar):
        ft.train(run, dataset, checkpoint=checkpoint, on_progress=bar.show, should_stop=stop.is_set)
    if stop.is_set():
        return progress.stopped(run.step, run.total_steps, checkpoint)
    path = ft.export(run, out, name=args.name or out.stem)
    measured = ft.measure(base_path, path, dataset.heldout, settings.ctx)
    summary: LoraSummary = {
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
        progress.print_done(summary)
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
    progress.say(args.json, line)
