"""``localchat twin``: digital twins (create, list, show, persona, rm); chat
with one with ``localchat chat --twin NAME``."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

from localchat.cli import output
from localchat.cli.usage import Parser, UsageError, add_json
from localchat.core.documents import indexer, twins
from localchat.core.documents.store import DocumentStore
from localchat.core.errors import LocalChatError
from localchat.core.models import adapters, library


def add_parser(sub: Any) -> None:
    twin = sub.add_parser("twin", help="digital twins: chat with an author through their texts")
    actions = twin.add_subparsers(
        dest="action", parser_class=Parser, metavar="ACTION", required=True
    )
    create = actions.add_parser(
        "create",
        help="a twin from a folder of one author's texts",
        description="Index the author's texts as a collection, write a persona (speak as the "
        "author, from the passages; say when the texts do not cover something), and "
        "optionally fine-tune a LoRA adapter on the same texts for the author's style. Then: "
        "'localchat chat --twin NAME'.",
    )
    create.add_argument("name", help="the author's name, as the twin speaks it")
    create.add_argument("--from", dest="folder", required=True, metavar="FOLDER")
    create.add_argument("-m", "--model", help="the installed chat model it speaks with")
    create.add_argument(
        "--lora",
        action="store_true",
        help="also fine-tune a LoRA adapter on the texts (needs the train extra; minutes to hours)",
    )
    create.add_argument(
        "--steps", type=int, help="with --lora: train this many steps (default: the preset's)"
    )
    add_json(create, "the twin")
    listing = actions.add_parser("list", help="the twins")
    add_json(listing, "a JSON array")
    show = actions.add_parser("show", help="a twin: its texts, model, adapter and persona")
    show.add_argument("name")
    add_json(show, "the twin")
    persona = actions.add_parser(
        "persona", help="print a twin's persona, or replace it with a file's text"
    )
    persona.add_argument("name")
    persona.add_argument("--set", metavar="FILE", help="the new persona ('-': standard input)")
    remove = actions.add_parser("rm", help="delete a twin and its collection (its texts stay)")
    remove.add_argument("name")


def run(args: argparse.Namespace) -> int:
    if args.action == "create":
        return _create(args)
    if args.action == "show":
        twin = twins.load(args.name)
        return output.emit(twin_json(twin), as_json=args.json, lines=lambda: _lines(twin))
    if args.action == "persona":
        twin = twins.load(args.name)
        if args.set is None:
            print(twin.persona)
            return 0
        text = sys.stdin.read() if args.set == "-" else Path(args.set).read_text("utf-8")
        if not text.strip():
            raise UsageError("the persona is empty")
        twins.save(twins.Twin(**{**twin_json(twin), "persona": text.strip()}))
        print(f"{twin.name}'s persona replaced")
        return 0
    if args.action == "rm":
        twin = twins.remove(args.name)
        store = DocumentStore()
        try:
            store.remove(store.collection(twin.collection).id)
        except LocalChatError:
            pass  # its collection was removed already
        finally:
            store.close()
        print(f"removed {twin.name} (its texts and any adapter file stay)")
        return 0
    found = twins.all_twins()
    return output.emit(
        [twin_json(t) for t in found],
        as_json=args.json,
        lines=lambda: [f"{t.name}: {t.source}" for t in found] or ["no twins"],
    )


def twin_json(twin: twins.Twin) -> dict[str, Any]:
    return {
        "name": twin.name,
        "collection": twin.collection,
        "persona": twin.persona,
        "model": twin.model,
        "adapter": twin.adapter,
        "source": twin.source,
    }


def _lines(twin: twins.Twin) -> list[str]:
    return [
        f"{twin.name}",
        f"  texts: {twin.source} (collection {twin.collection!r})",
        f"  model: {twin.model or '(the one chosen)'}",
        f"  adapter: {twin.adapter or 'none'}",
        "  persona:",
        *(f"    {line}" for line in twin.persona.splitlines()),
    ]


def _create(args: argparse.Namespace) -> int:
    folder = Path(args.folder).expanduser().resolve()
    if not folder.is_dir():
        raise UsageError(f"--from must be a folder of texts: {folder} is not one")
    if twins.exists(args.name):
        raise LocalChatError(f"there is already a twin named {args.name!r}")
    model = None
    if args.model:
        path = library.resolve(args.model)
        if path not in library.installed():
            raise LocalChatError(f"{path.name} is not an installed model (see 'localchat models')")
        model = path.stem
    if args.lora and model is None:
        raise UsageError("--lora needs the model it is for: add -m MODEL")
    store = DocumentStore()
    try:
        report = indexer.add(store, twins.collection_name(args.name), [folder])
    finally:
        store.close()
    if not report.indexed:
        raise LocalChatError(f"no texts could be read in {folder}")
    adapter = None
    if args.lora:
        adapter = str(adapters.adapters_dir() / f"twin-{twins.slug(args.name)}.gguf")
        command = [sys.executable, "-m", "localchat", "train", "lora", "--base", str(model),
                   "--data", str(folder), "--out", adapter, "--preset", "quick"]  # fmt: skip
        if args.steps:
            command += ["--steps", str(args.steps)]
        if subprocess.run(command, stdout=sys.stderr).returncode != 0:
            raise LocalChatError(
                "the fine-tuning failed (said above); the twin was not made: run the command "
                "again, or leave out --lora"
            )
    twin = twins.save(
        twins.Twin(
            name=args.name,
            collection=twins.collection_name(args.name),
            persona=twins.persona_for(args.name),
            model=model,
            adapter=adapter,
            source=str(folder),
        )
    )
    skipped = f", {len(report.skipped)} skipped" if report.skipped else ""
    return output.emit(
        twin_json(twin),
        as_json=args.json,
        lines=lambda: [
            f"made {twin.name} from {len(report.indexed)} texts{skipped}; "
            f"chat with: localchat chat --twin {twin.name!r}"
        ],
    )
