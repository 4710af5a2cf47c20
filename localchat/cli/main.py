"""The ``localchat`` command line: the same core the window uses.

The contract (tools and tests depend on it): errors are one line on stderr
starting ``error:``; the exit status is 2 for usage errors and 1 for anything
else; ``chat --json`` prints one JSON object per turn.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, NoReturn

from localchat import __version__
from localchat.cli import finetune as finetune_cli
from localchat.cli import train as train_cli
from localchat.cli.progress import ProgressLine
from localchat.core import hardware, params, paths
from localchat.core.engine.client import ChatStream, Engine
from localchat.core.engine.gguf_info import read_model_info
from localchat.core.engine.protocol import ChatResult, Message
from localchat.core.errors import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    LocalChatError,
    SettingError,
)
from localchat.core.models import adapters, catalog, fit, hub, library
from localchat.core.params import effective_ctx
from localchat.core.settings import AppSettings
from localchat.core.units import clock, human_count, human_size

JSON_FIELDS = (
    "reply",
    "prompt_tokens",
    "evaluated_tokens",
    "ahead_tokens",
    "completion_tokens",
    "ttft_ms",
    "tokens_per_s",
    "context_size",
    "context_used",
    "finish_reason",
    "trimmed_messages",
    "shifted_tokens",
)


class UsageError(LocalChatError):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one ``error:`` line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="localchat", description="Chat with language models on your computer.")
    parser.add_argument("--version", action="version", version=f"localchat {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")

    chat = sub.add_parser(
        "chat",
        help="chat with a model in the terminal",
        description="Chat with a model. With --prompt: one reply. With input piped in: each "
        "line is a user turn of one conversation. Otherwise: an interactive chat.",
    )
    chat.add_argument("-m", "--model", help="a .gguf file or the name of an installed model")
    chat.add_argument("--prompt", help="send this one message and print the reply")
    chat.add_argument("--json", action="store_true", help="print one JSON object per turn")
    chat.add_argument("--lora", metavar="PATH", help="apply this LoRA adapter (.gguf)")
    params.add_cli_arguments(chat)

    info = sub.add_parser(
        "info",
        help="what a model file is, without loading it",
        description="Show a GGUF file's architecture, size, quantization, trained context and "
        "chat template, and estimate the memory it needs at a context size.",
    )
    info.add_argument("model", help="a .gguf file or the name of an installed model")
    _add_ctx(info, "the memory estimate")
    info.add_argument("--json", action="store_true", help="print a JSON object")

    models = sub.add_parser(
        "models", help="installed models; search and download from the Hugging Face Hub"
    )
    actions = models.add_subparsers(
        dest="action", parser_class=_Parser, metavar="ACTION", required=True
    )
    listing = actions.add_parser("list", help="the installed models")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    add = actions.add_parser("import", help="copy a .gguf file into the models folder")
    add.add_argument("path", help="the .gguf file")
    add.add_argument(
        "--link", action="store_true", help="hard-link instead of copying, where possible"
    )
    remove = actions.add_parser("rm", help="delete an installed model (its chats stay)")
    remove.add_argument("name", help="the model's name")
    find = actions.add_parser("search", help="search the Hugging Face Hub for GGUF models")
    find.add_argument("query", help="words in the repository's name, e.g. 'llama 8b instruct'")
    find.add_argument("--sort", choices=("downloads", "likes", "recent"), default="downloads")
    find.add_argument("--limit", type=int, default=20, help="at most this many (20)")
    find.add_argument("--json", action="store_true", help="print a JSON array")
    listing_files = actions.add_parser(
        "files", help="a Hub repository's GGUF models: quantization, size, fit"
    )
    listing_files.add_argument("repo_id", help="e.g. bartowski/Meta-Llama-3.1-8B-Instruct-GGUF")
    _add_ctx(listing_files, "the memory fit")
    listing_files.add_argument("--json", action="store_true", help="print a JSON array")
    pull = actions.add_parser(
        "pull", help="download a model from the Hub (run again to resume an interrupted one)"
    )
    pull.add_argument("repo_id", help="e.g. bartowski/Meta-Llama-3.1-8B-Instruct-GGUF")
    pull.add_argument("filename", nargs="?", help="the .gguf file (or pass --quant)")
    pull.add_argument("--quant", help="the quantization to pull, e.g. Q4_K_M")
    train_cli.add_arguments(sub)
    return parser


def _add_ctx(parser: argparse.ArgumentParser, purpose: str) -> None:
    parser.add_argument(
        "--ctx",
        type=int,
        default=params.default("ctx"),
        metavar="N",
        help=f"context size for {purpose} (default %(default)s)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    _quiet_pipes()
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            raise UsageError("a command is needed (see 'localchat --help')")
        if args.command == "info":
            return _info(args)
        if args.command == "models":
            return _models(args)
        if args.command == "train":
            if args.kind == "lora":
                return finetune_cli.run_lora(args, train_cli.check_trainer)
            return train_cli.run_demo(args) if args.kind == "demo" else train_cli.run_train(args)
        if args.command == "eval":
            return train_cli.run_eval(args)
        try:
            settings = params.from_cli(args)
        except SettingError as exc:
            raise UsageError(str(exc)) from None
        return _chat(args, settings)
    except UsageError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except LocalChatError as exc:
        return _fail(str(exc), EXIT_ERROR)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_ERROR


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


def _quiet_pipes() -> None:
    """Text the terminal cannot encode becomes '?' rather than a traceback."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="replace")


# -- models --------------------------------------------------------------------


def _models(args: argparse.Namespace) -> int:
    if args.action == "search":
        return _search(args)
    if args.action == "files":
        return _files(args)
    if args.action == "pull":
        return _pull(args)
    if args.action == "import":
        path = library.import_model(args.path, link=args.link)
        print(f"installed {path.stem} ({path})")
        return 0
    if args.action == "rm":
        path = library.remove_model(args.name)
        print(f"removed {path.stem}")
        return 0
    rows: list[dict[str, Any]] = []
    found = [(p, "installed") for p in library.installed()]
    found += [(p, "hf-cache") for p in library.hf_cache_models()]
    bundled = library.demo()
    if bundled is not None:
        found.append((bundled, "demo"))
    for path, source in found:
        info = library.describe(path)
        if isinstance(info, str):
            rows.append({"name": path.stem, "path": str(path), "source": source, "error": info})
            continue
        rows.append(
            {
                "name": path.stem,
                "path": str(path),
                "source": source,
                "architecture": info.architecture,
                "parameters": info.parameter_count,
                "quantization": info.quantization,
                "file_size": info.file_size,
                "trained_context": info.context_length,
            }
        )
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    if not rows:
        print(
            f"No models installed. Add one with 'localchat models import FILE.gguf', or "
            f"copy it into {paths.models_dir()}"
        )
        return 0
    for row in rows:
        where = {
            "hf-cache": "  (in the Hugging Face cache)",
            "demo": "  (the tiny demo model that ships with LocalChat)",
        }.get(row["source"], "")
        if "error" in row:
            print(f"{row['name']:<40} unusable: {row['error']}{where}")
        else:
            print(
                f"{row['name']:<40} {human_count(row['parameters']):>7}  "
                f"{row['quantization']:<8} {human_size(row['file_size']):>9}  "
                f"ctx {row['trained_context']:,}{where}"
            )
    return 0


def _search(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    found = hub.search(args.query, sort=args.sort, limit=args.limit)
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in found], ensure_ascii=False))
        return 0
    if not found:
        print(f"No GGUF models on the Hub match {args.query!r}.")
    for r in found:
        gated = "  (gated)" if r.gated else ""
        print(f"{r.repo_id:<60} {r.downloads:>10,} downloads {r.likes:>6,} likes{gated}")
    return 0


def _files(args: argparse.Namespace) -> int:
    models = hub.files(args.repo_id)
    rows: list[dict[str, Any]] = []
    gpu = hardware.gpu_memory()
    for m in models:
        verdict = fit.fit(m.size, args.ctx, gpu=gpu)
        rows.append(
            {
                "name": m.name,
                "quantization": m.quant,
                "size": m.size,
                "parts": [p.path for p in m.parts],
                "sha256": [p.sha256 for p in m.parts],
                "fit": verdict.verdict,
                "memory_needed": verdict.need,
            }
        )
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    if not rows:
        print(f"{args.repo_id} has no GGUF model files.")
    for row in rows:
        split = f"  ({len(row['parts'])} parts)" if len(row["parts"]) > 1 else ""
        print(
            f"{row['name']:<56} {row['quantization']:<8} {human_size(row['size']):>9}  "
            f"{row['fit']}{split}"
        )
    return 0


def _pull(args: argparse.Namespace) -> int:
    if args.filename and args.quant:
        raise UsageError("name a file or pass --quant, not both")
    model = hub.choose(hub.files(args.repo_id), filename=args.filename, quant=args.quant)
    bar = _ProgressBar(sys.stderr)
    try:
        path = hub.pull(model, on_progress=bar.show)
    finally:
        bar.close()
    print(f"installed {path.stem} ({path})")
    adopted = catalog.adopt(path, model.repo_id, AppSettings())
    if adopted:
        chosen = ", ".join(f"{k}={v!r}" for k, v in adopted.items())
        print(f"with the catalog's recommended settings for it: {chosen}")
    return 0


class _ProgressBar(ProgressLine):
    def show(self, p: hub.Progress) -> None:
        share = p.done / p.total if p.total else 1.0
        eta = p.eta
        self.update(
            f"{p.name}  {share:6.1%}  {human_size(p.done)} of {human_size(p.total)}  "
            f"{human_size(p.speed)}/s  ETA {clock(eta, hours=True) if eta is not None else '?'}",
            share,
        )


# -- info ----------------------------------------------------------------------


def _info(args: argparse.Namespace) -> int:
    info = read_model_info(library.resolve(args.model))
    if info.file_kind == "adapter":
        return _adapter_info(info.path, as_json=args.json)
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
    if args.json:
        print(json.dumps(facts, ensure_ascii=False))
        return 0
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
    for label, value in rows:
        print(f"{label:<18}{value}")
    return 0


def _adapter_info(path: Path, *, as_json: bool) -> int:
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
    if as_json:
        print(json.dumps(facts, ensure_ascii=False))
        return 0
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
    for label, value in rows:
        print(f"{label:<21}{value}")
    return 0


# -- chat ----------------------------------------------------------------------


def _chat(args: argparse.Namespace, settings: params.GenerationSettings) -> int:
    model = library.resolve(args.model)
    # The settings chosen for this model in the window (or recommended by the
    # catalog) are the defaults here too; the flags go on top.
    stored = AppSettings()
    if stored.problem:
        print(f"note: {stored.problem}", file=sys.stderr)
    try:
        settings = params.from_cli(args, stored.generation(str(model)))
    except SettingError as exc:
        raise UsageError(str(exc)) from None
    with Engine() as engine:
        loaded = engine.load(model, settings, lora=args.lora)
        if loaded.notice:
            print(f"note: {loaded.notice}", file=sys.stderr)
        session = _Session(engine, settings, as_json=args.json, out=sys.stdout)
        if args.prompt is not None:
            return session.turn(args.prompt)
        if not sys.stdin.isatty():
            for line in sys.stdin:
                text = line.rstrip("\r\n")
                if text.strip():
                    code = session.turn(text)
                    if code:
                        return code
            return 0
        return _interactive(session, model.stem)


class _Session:
    """One conversation: the messages so far and how replies are printed."""

    def __init__(
        self, engine: Engine, settings: params.GenerationSettings, *, as_json: bool, out: IO[str]
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.as_json = as_json
        self.out = out
        self.messages: list[Message] = []

    def turn(self, text: str) -> int:
        """Send one user message and print the reply; returns an exit status."""
        self.messages.append({"role": "user", "content": text})
        stream = self.engine.chat(self.messages, self.settings)
        interrupted = self._print(stream)
        result = stream.result
        assert result is not None
        self.messages.append({"role": "assistant", "content": result.reply})
        if self.as_json:
            backend = self.engine.loaded.backend if self.engine.loaded else "CPU"
            self.out.write(json.dumps(_json(result, backend), ensure_ascii=False) + "\n")
            self.out.flush()
        return EXIT_INTERRUPTED if interrupted else 0

    def _print(self, stream: ChatStream) -> bool:
        """Stream the reply; Ctrl+C stops the reply (keeping what came), not the program."""
        interrupted = False

        def on_sigint(_sig: int, _frame: object) -> None:
            nonlocal interrupted
            interrupted = True
            stream.cancel()

        previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            for piece in stream:
                if not self.as_json:
                    self.out.write(piece)
                    self.out.flush()
        finally:
            signal.signal(signal.SIGINT, previous)
        if not self.as_json:
            self.out.write("\n")
            self.out.flush()
        return interrupted


def _json(result: ChatResult, backend: str) -> dict[str, Any]:
    data: dict[str, Any] = {name: getattr(result, name) for name in JSON_FIELDS}
    data["backend"] = backend
    data["ttft_ms"] = round(result.ttft_ms, 2)
    data["tokens_per_s"] = round(result.tokens_per_s, 2)
    return data


def _interactive(session: _Session, name: str) -> int:
    info = session.engine.loaded
    size = f", context {info.n_ctx} tokens, on {info.backend}" if info else ""
    print(f"Chatting with {name}{size}. Ctrl+C stops a reply; Ctrl+D (or /exit) quits.")
    while True:
        try:
            text = input(">>> ")
        except EOFError:
            print()
            return 0
        except KeyboardInterrupt:
            print()
            continue
        if text.strip() in ("/exit", "/quit"):
            return 0
        if text.strip():
            session.turn(text)
