"""The ``localchat`` command line: the same core the window uses. This module
builds the parser from each command's module and runs the one asked for.

The contract (tools and tests depend on it): errors are one line on stderr
starting ``error:``; the exit status is 2 for usage errors and 1 for anything
else; ``chat --json`` prints one JSON object per turn.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from localchat import __version__
from localchat.cli import chat, docs, info, models, serve, twin
from localchat.cli import finetune as finetune_cli
from localchat.cli import train as train_cli
from localchat.cli.usage import Parser, UsageError
from localchat.core import params
from localchat.core.errors import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    LocalChatError,
    SettingError,
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="localchat", description="Chat with language models on your computer.")
    parser.add_argument("--version", action="version", version=f"localchat {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=Parser, metavar="COMMAND")
    chat.add_parser(sub)
    info.add_parser(sub)
    models.add_parser(sub)
    docs.add_parser(sub)
    twin.add_parser(sub)
    serve.add_parser(sub)
    train_cli.add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    _quiet_pipes()
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            raise UsageError("a command is needed (see 'localchat --help')")
        if args.command == "info":
            return info.run(args)
        if args.command == "models":
            return models.run(args)
        if args.command == "serve":
            return serve.run(args)
        if args.command == "docs":
            return docs.run(args)
        if args.command == "twin":
            return twin.run(args)
        if args.command == "train":
            if args.kind == "lora":
                return finetune_cli.run_lora(args, train_cli.check_trainer)
            return train_cli.run_demo(args) if args.kind == "demo" else train_cli.run_train(args)
        if args.command == "eval":
            return train_cli.run_eval(args)
        try:
            params.from_cli(args)  # the flags alone are valid settings
        except SettingError as exc:
            raise UsageError(str(exc)) from None
        return chat.run(args)
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
