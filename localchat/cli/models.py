"""``localchat models``: the installed models (list, import, rm), and the
Hugging Face Hub (search, files, pull)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Iterator
from typing import Any

from localchat.cli import output
from localchat.cli.progress import ProgressLine
from localchat.cli.usage import Parser, UsageError, add_ctx, add_json
from localchat.core import hardware, paths
from localchat.core.models import catalog, fit, hub, library, transfer
from localchat.core.settings import AppSettings
from localchat.core.units import clock, human_count, human_size


def add_parser(sub: Any) -> None:
    models = sub.add_parser(
        "models", help="installed models; search and download from the Hugging Face Hub"
    )
    actions = models.add_subparsers(
        dest="action", parser_class=Parser, metavar="ACTION", required=True
    )
    listing = actions.add_parser("list", help="the installed models")
    add_json(listing, "a JSON array")
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
    add_json(find, "a JSON array")
    listing_files = actions.add_parser(
        "files", help="a Hub repository's GGUF models: quantization, size, fit"
    )
    listing_files.add_argument("repo_id", help="e.g. bartowski/Meta-Llama-3.1-8B-Instruct-GGUF")
    add_ctx(listing_files, "the memory fit")
    add_json(listing_files, "a JSON array")
    pull = actions.add_parser(
        "pull", help="download a model from the Hub (run again to resume an interrupted one)"
    )
    pull.add_argument("repo_id", help="e.g. bartowski/Meta-Llama-3.1-8B-Instruct-GGUF")
    pull.add_argument("filename", nargs="?", help="the .gguf file (or pass --quant)")
    pull.add_argument("--quant", help="the quantization to pull, e.g. Q4_K_M")


def run(args: argparse.Namespace) -> int:
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
    return _list(args)


# -- installed -------------------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    found = [
        (p, "checkout" if library.in_checkout(p) else "installed") for p in library.installed()
    ]
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
    return output.emit(rows, as_json=args.json, lines=lambda: _list_lines(rows))


def _list_lines(rows: list[dict[str, Any]]) -> Iterator[str]:
    if not rows:
        yield (
            f"No models installed. Add one with 'localchat models import FILE.gguf', or "
            f"copy it into {paths.models_dir()}"
        )
    for row in rows:
        where = {
            "hf-cache": "  (in the Hugging Face cache)",
            "demo": "  (the tiny demo model that ships with LocalChat)",
        }.get(row["source"], "")
        if "error" in row:
            yield f"{row['name']:<40} unusable: {row['error']}{where}"
        else:
            yield (
                f"{row['name']:<40} {human_count(row['parameters']):>7}  "
                f"{row['quantization']:<8} {human_size(row['file_size']):>9}  "
                f"ctx {row['trained_context']:,}{where}"
            )


# -- the Hub ---------------------------------------------------------------------------


def _search(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    found = hub.search(args.query, sort=args.sort, limit=args.limit)

    def lines() -> Iterator[str]:
        if not found:
            yield f"No GGUF models on the Hub match {args.query!r}."
        for r in found:
            gated = "  (gated)" if r.gated else ""
            yield f"{r.repo_id:<60} {r.downloads:>10,} downloads {r.likes:>6,} likes{gated}"

    return output.emit([dataclasses.asdict(r) for r in found], as_json=args.json, lines=lines)


def _files(args: argparse.Namespace) -> int:
    models = hub.files(args.repo_id)
    gpu = hardware.gpu_memory()  # asked once for the table (nvidia-smi takes a while)
    rows: list[dict[str, Any]] = []
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

    def lines() -> Iterator[str]:
        if not rows:
            yield f"{args.repo_id} has no GGUF model files."
        for row in rows:
            split = f"  ({len(row['parts'])} parts)" if len(row["parts"]) > 1 else ""
            yield (
                f"{row['name']:<56} {row['quantization']:<8} {human_size(row['size']):>9}  "
                f"{row['fit']}{split}"
            )

    return output.emit(rows, as_json=args.json, lines=lines)


def _pull(args: argparse.Namespace) -> int:
    if args.filename and args.quant:
        raise UsageError("name a file or pass --quant, not both")
    model = hub.choose(hub.files(args.repo_id), filename=args.filename, quant=args.quant)
    bar = _ProgressBar(sys.stderr)
    try:
        path = transfer.pull(model, on_progress=bar.show)
    finally:
        bar.close()
    print(f"installed {path.stem} ({path})")
    adopted = catalog.adopt(path, model.repo_id, AppSettings())
    if adopted:
        chosen = ", ".join(f"{k}={v!r}" for k, v in adopted.items())
        print(f"with the catalog's recommended settings for it: {chosen}")
    return 0


class _ProgressBar(ProgressLine):
    def show(self, p: transfer.Progress) -> None:
        share = p.done / p.total if p.total else 1.0
        eta = p.eta
        self.update(
            f"{p.name}  {share:6.1%}  {human_size(p.done)} of {human_size(p.total)}  "
            f"{human_size(p.speed)}/s  ETA {clock(eta, hours=True) if eta is not None else '?'}",
            share,
        )
