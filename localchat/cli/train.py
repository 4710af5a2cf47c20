"""``localchat train scratch`` and ``localchat eval perplexity``.

Imported only when those commands run: training needs PyTorch (the ``train``
extra), which chatting never loads.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
from pathlib import Path
from typing import Any

from localchat.cli import finetune, progress
from localchat.core import paths
from localchat.core.errors import LocalChatError
from localchat.core.models import library
from localchat.core.trainer import options
from localchat.core.trainer.progress import ScratchSummary


class NeedsTorch(LocalChatError):
    pass


def check_trainer() -> Any:
    for module in ("torch", "tokenizers"):
        if importlib.util.find_spec(module) is None:
            raise NeedsTorch(
                f"training needs the 'train' extra ({module} is missing): install the CPU "
                "build of PyTorch first (pip install torch --index-url "
                "https://download.pytorch.org/whl/cpu), then pip install 'localchat[train]'"
            )
    from localchat.core.trainer import train

    return train


def add_arguments(sub: Any) -> None:
    trainer = sub.add_parser(
        "train", help="fine-tune a model on your texts or chats (LoRA), or train one from scratch"
    )
    kinds = trainer.add_subparsers(dest="kind", metavar="KIND", required=True)
    finetune.add_arguments(kinds)
    scratch = kinds.add_parser(
        "scratch",
        help="clean and deduplicate the text, train a tokenizer and a model, export a GGUF",
        description="Train a llama-architecture model from scratch on text files or folders. "
        "A checkpoint is kept next to the output (OUT.ckpt): run the same command again to "
        "go on from it, with more --steps if you like.",
    )
    options.add_cli_arguments(scratch, "scratch")
    scratch.set_defaults(description="")  # the export's default: what it was trained on

    demo = kinds.add_parser(
        "demo",
        help="train the bundled demo model (on Python's own documentation)",
        description="Rebuild the demo model that ships in the package "
        "(localchat/assets/): the chat exchanges made from this Python's documentation "
        "(localchat.core.trainer.demo), then train scratch on them with the settings below. "
        "Takes about 15 minutes on two CPU cores.",
    )
    demo.add_argument("--out", default=str(paths.SHIPPED_DEMO_MODEL), metavar="MODEL.gguf")
    options.add_cli_arguments(demo, "scratch", only=("steps", "restart", "json"))

    evaluate = sub.add_parser("eval", help="measure a model")
    measures = evaluate.add_subparsers(dest="measure", metavar="MEASURE", required=True)
    ppl = measures.add_parser(
        "perplexity",
        help="how well a model predicts a text (lower is better)",
        description="Perplexity of a model on text files: the exponential of the mean "
        "negative log-likelihood per token, over non-overlapping windows, computed by "
        "llama.cpp in the engine's worker process.",
    )
    ppl.add_argument("-m", "--model", required=True, help="a .gguf file or an installed model")
    ppl.add_argument("--lora", metavar="PATH", help="apply this LoRA adapter (.gguf)")
    ppl.add_argument("--data", nargs="+", required=True, metavar="PATH", help="text files/folders")
    ppl.add_argument("--window", type=int, default=512, help="tokens per window (512)")
    ppl.add_argument("--max-windows", type=int, default=0, help="at most this many (all)")
    ppl.add_argument("--json", action="store_true", help="print a JSON object")


DEMO = {"preset": "mini", "batch": 16, "lr": 3e-3, "vocab": 4096, "seed": 0, "quantize": "f16"}


def run_demo(args: argparse.Namespace) -> int:
    check_trainer()
    import tempfile

    from localchat.core.trainer import demo

    with tempfile.TemporaryDirectory(prefix="localchat-demo-") as tmp:
        files = demo.write_corpus(Path(tmp))
        settings = argparse.Namespace(
            **vars(args),
            **DEMO,
            data=[str(f) for f in files],
            name="LocalChat demo (tiny)",
            license="PSF-2.0",
            description=demo.describe(),
            tokenizer_from=None,
        )
        return run_train(settings)


def run_train(args: argparse.Namespace) -> int:
    tr = check_trainer()
    out = Path(args.out)
    if out.suffix.lower() != ".gguf":
        raise LocalChatError("--out must name a .gguf file")
    settings = options.scratch_settings(vars(args))
    out.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = out.with_suffix(".ckpt")
    if args.restart:
        checkpoint.unlink(missing_ok=True)
    elif checkpoint.exists():
        print(f"going on from {checkpoint}", file=sys.stderr)
    with progress.training(args.json) as (stop, bar):
        run, corpus, _train_ids, heldout_ids = tr.scratch(
            args.data,
            preset_name=args.preset,
            vocab_size=args.vocab,
            tokenizer_from=args.tokenizer_from,
            settings=settings,
            checkpoint=checkpoint,
            on_progress=bar.show,
            should_stop=stop.is_set,
        )
    if stop.is_set():
        return progress.stopped(run.step, settings.steps, checkpoint)
    heldout = tr.heldout_loss(run.model, heldout_ids)
    name = args.name or out.stem
    path = tr.export(
        run,
        out,
        name=name,
        quantize=args.quantize,
        license=args.license,
        description=args.description,
    )
    summary: ScratchSummary = {
        "model": str(path),
        "checkpoint": str(checkpoint),
        "steps": run.step,
        "parameters": sum(p.numel() for p in run.model.parameters()),
        "vocab": run.tokenizer.vocab_size,
        "heldout_loss": round(heldout, 4),
        "heldout_perplexity": round(math.exp(heldout), 3),
        "data": corpus.report.lines(),
    }
    if args.json:
        progress.print_done(summary)
    else:
        for line in corpus.report.lines():
            print(line)
        print(
            f"wrote {path} ({summary['parameters']:,} parameters, vocabulary "
            f"{summary['vocab']:,}); held-out perplexity {summary['heldout_perplexity']}"
        )
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from localchat.core.engine.client import Engine
    from localchat.core.params import GenerationSettings
    from localchat.core.trainer import data

    if args.window < 2:
        raise LocalChatError("--window must be at least 2")
    chats = [p for p in args.data if Path(p).suffix.lower() == ".jsonl"]
    if chats and len(chats) != len(args.data):
        raise LocalChatError("give text files or chat .jsonl files, not both at once")
    model = library.resolve(args.model)
    with Engine() as engine:
        loaded = engine.load(model, GenerationSettings(ctx=max(args.window, 256)), lora=args.lora)
        if chats:
            report = _score_chats(engine, model, chats, min(args.window, loaded.n_ctx))
        else:
            text = "\n\n".join(data.read_paragraphs(args.data))
            report = engine.perplexity(
                text=text, window=min(args.window, loaded.n_ctx), max_windows=args.max_windows
            )
    result = {
        "model": str(model),
        "lora": args.lora,
        "perplexity": round(report.perplexity, 4),
        "nll": round(report.nll, 5),
        "top1": round(report.top1, 4),
        "windows": report.windows,
        "tokens": report.tokens,
        "scored": "assistant replies" if chats else "all tokens",
    }
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        what = f"{report.windows} conversations' replies" if chats else f"{report.windows} windows"
        print(
            f"perplexity {result['perplexity']} over {report.tokens:,} tokens "
            f"({what}; first choice right {report.top1:.1%})"
        )
    return 0


def _score_chats(engine: Any, model: Path, files: list[str], ctx: int) -> Any:
    """Perplexity of the assistant replies of chat JSONL files, each conversation
    rendered with the model's template (as a fine-tune learns them)."""
    from localchat.core.engine.gguf_info import read_model_info
    from localchat.core.trainer import chat_data

    keys = read_model_info(model, full_arrays=("tokenizer.",)).metadata
    template = chat_data.template_for(keys)

    def encode(text: str, add_bos: bool) -> list[int]:
        return list(engine.tokenize(text, add_bos=add_bos, special=True))

    examples = [
        chat_data.example(c, template, encode) for f in files for c in chat_data.read_jsonl(f)
    ]
    examples = [e for e in examples if len(e) <= ctx and e.learned]
    if not examples:
        raise LocalChatError(f"no conversation fits in {ctx:,} tokens: raise --window")
    return engine.score([e.tokens for e in examples], [e.learn for e in examples])
