"""``localchat docs``: document collections (add, list, update, search, rm),
the index ``localchat/core/documents`` keeps."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

from localchat.cli import output
from localchat.cli.progress import ProgressLine
from localchat.cli.usage import Parser, UsageError, add_json
from localchat.core.documents import indexer, search
from localchat.core.documents.embedding import Embedding, installed_embedder
from localchat.core.documents.indexer import Progress, UpdateReport
from localchat.core.documents.store import DocumentStore, Passage
from localchat.core.errors import LocalChatError
from localchat.core.units import clock, human_size


def add_parser(sub: Any) -> None:
    docs = sub.add_parser("docs", help="document collections to chat with")
    actions = docs.add_subparsers(
        dest="action", parser_class=Parser, metavar="ACTION", required=True
    )
    add = actions.add_parser(
        "add", help="make a collection of folders and files (or add to one) and index it"
    )
    add.add_argument("name", help="the collection's name")
    add.add_argument("paths", nargs="+", metavar="PATH", help="folders and files")
    add.add_argument(
        "--embedder",
        metavar="MODEL",
        help="an installed embedding model (GGUF) to search a new collection by meaning too, "
        "besides its words",
    )
    add_json(add, "what was indexed and skipped")
    listing = actions.add_parser("list", help="the collections")
    add_json(listing, "a JSON array")
    update = actions.add_parser(
        "update", help="index what changed in a collection's folders (and finish one cut short)"
    )
    update.add_argument("name")
    add_json(update, "what was indexed and skipped")
    find = actions.add_parser("search", help="the passages of a collection that match a question")
    find.add_argument("name")
    find.add_argument("query")
    find.add_argument("--top", type=int, default=5, help="at most this many (5)")
    add_json(find, "a JSON array")
    remove = actions.add_parser("rm", help="delete a collection's index (the files stay)")
    remove.add_argument("name")


def run(args: argparse.Namespace) -> int:
    store = DocumentStore()
    try:
        with contextlib.ExitStack() as stack:
            if args.action == "add":
                embedding = _embedding(stack, args.embedder) if args.embedder else None
                paths = [Path(p) for p in args.paths]
                report = indexer.add(
                    store, args.name, paths, progress=_progress(args), embedding=embedding
                )
                return _report(report, args)
            if args.action == "update":
                embedding = _collection_embedding(stack, store, args.name)
                report = indexer.update(
                    store, args.name, progress=_progress(args), embedding=embedding
                )
                return _report(report, args)
            if args.action == "search":
                if not 1 <= args.top <= 100:
                    raise UsageError(f"--top must be between 1 and 100, got {args.top}")
                embedding = _collection_embedding(stack, store, args.name)
                found = search.search(
                    store, [args.name], args.query, top=args.top, embedding=embedding
                )
                return output.emit(
                    [passage_json(p) for p in found],
                    as_json=args.json,
                    lines=lambda: _passage_lines(found),
                )
        if args.action == "rm":
            store.remove(store.collection(args.name).id)
            print(f"removed {args.name} (its files are untouched)")
            return 0
        return _list(store, args)
    finally:
        store.close()


def _embedding(stack: contextlib.ExitStack[Any], model: str) -> Embedding:
    """The embedding model ``model`` (installed name or file), loaded in an
    engine that lives as long as ``stack``."""
    from localchat.core.engine.client import Engine
    from localchat.core.models import library

    path = library.resolve(model)
    if path not in library.installed():
        raise LocalChatError(
            f"{path.name} is not an installed model: install it first "
            "('localchat models import PATH'), so the collection can find it again"
        )
    engine = stack.enter_context(Engine())
    return Embedding(engine, path)


def _collection_embedding(
    stack: contextlib.ExitStack[Any], store: DocumentStore, name: str
) -> Embedding | None:
    embedder = store.collection(name).embedder
    if embedder is None:
        return None
    return _embedding(stack, str(installed_embedder(embedder)))


def passage_json(p: Passage) -> dict[str, Any]:
    return {
        "path": p.path,
        "location": p.location,
        "pages": list(p.pages) if p.pages else None,
        "lines": list(p.lines) if p.lines else None,
        "headings": list(p.headings),
        "text": p.text,
        "score": round(p.score, 6),
    }


def _passage_lines(found: list[Passage]) -> list[str]:
    if not found:
        return ["nothing found"]
    out = []
    for i, p in enumerate(found, 1):
        where = " · ".join(x for x in (p.location, " › ".join(p.headings)) if x)
        out.append(f"{i}. {p.path}" + (f" ({where})" if where else ""))
        text = " ".join(p.text.split())
        out.append("   " + (text if len(text) <= 300 else text[:299] + "…"))
    return out


def _progress(args: argparse.Namespace) -> Any:
    if args.json:
        return None
    line = ProgressLine(sys.stderr)

    def show(p: Progress) -> None:
        if p.files_total == 0:
            return
        eta = f", {clock(p.eta_s)} left" if p.eta_s else ""
        share = p.bytes_done / p.bytes_total if p.bytes_total else 1.0
        line.update(
            f"indexing: {p.files_done}/{p.files_total} files, "
            f"{human_size(p.bytes_done)} of {human_size(p.bytes_total)}{eta}",
            share,
        )
        if p.files_done == p.files_total:
            line.close()

    return show


def _report(report: UpdateReport, args: argparse.Namespace) -> int:
    data = {
        "indexed": report.indexed,
        "unchanged": report.unchanged,
        "removed": report.removed,
        "skipped": [{"path": p, "reason": r} for p, r in report.skipped],
    }

    def lines() -> list[str]:
        out = [
            f"indexed {len(report.indexed)} files, {report.unchanged} unchanged, "
            f"{len(report.removed)} removed, {len(report.skipped)} skipped"
        ]
        out += [f"skipped {p}: {r}" for p, r in report.skipped]
        return out

    return output.emit(data, as_json=args.json, lines=lines)


def _list(store: DocumentStore, args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = [
        {
            "name": c.name,
            "paths": list(c.roots),
            "files": c.files,
            "skipped": c.skipped,
            "passages": c.chunks,
            "bytes": c.bytes,
            "complete": not c.updating,
            "embedder": c.embedder,
        }
        for c in store.collections()
    ]

    def lines() -> list[str]:
        if not rows:
            return ["no collections (add one with 'localchat docs add NAME PATH...')"]
        out = []
        for r in rows:
            state = "" if r["complete"] else " (update not finished: run 'localchat docs update')"
            out.append(
                f"{r['name']}: {r['files']} files, {r['passages']} passages, "
                f"{human_size(int(r['bytes']))}{state}"
            )
            out += [f"  {p}" for p in r["paths"]]
        return out

    return output.emit(rows, as_json=args.json, lines=lines)
