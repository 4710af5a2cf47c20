"""How the command line is parsed: argparse that reports a mistake in one
``error:`` line with exit status 2 (:class:`UsageError`), and the options
several commands share."""

from __future__ import annotations

import argparse
from typing import NoReturn

from localchat.core import params
from localchat.core.errors import LocalChatError


class UsageError(LocalChatError):
    """A mistake in the command line itself (exit status 2)."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one ``error:`` line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def add_ctx(parser: argparse.ArgumentParser, purpose: str) -> None:
    """``--ctx N``: the context size an estimate assumes."""
    parser.add_argument(
        "--ctx",
        type=int,
        default=params.default("ctx"),
        metavar="N",
        help=f"context size for {purpose} (default %(default)s)",
    )


def add_json(parser: argparse.ArgumentParser, what: str) -> None:
    """``--json``: the result as JSON (see :func:`localchat.cli.output.emit`)."""
    parser.add_argument("--json", action="store_true", help=f"print {what}")
