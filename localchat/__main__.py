"""``localchat``: no arguments opens the window; a command runs the CLI."""

from __future__ import annotations

import logging
import sys

from localchat import __version__


def main(argv: list[str] | None = None) -> int:
    if getattr(sys, "frozen", False):  # the engine's worker process, in the bundle
        import multiprocessing  # (only then: the window starts without it)

        multiprocessing.freeze_support()
    args = list(sys.argv[1:] if argv is None else argv)
    level = _take_log_level(args)
    from localchat.core import logs
    from localchat.core.errors import LocalChatError

    try:
        logs.setup(level)
    except LocalChatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.getLogger("localchat.main").info(
        "localchat %s: %s", __version__, " ".join(args[:2]) if args else "the window"
    )
    if not args:
        from localchat.ui.display_check import check

        if problem := check():  # before Qt aborts without naming what it lacks
            print(problem, file=sys.stderr)
            return 1
        from localchat.ui.app import run

        return run()
    from localchat.cli.main import main as cli_main

    return cli_main(args)


def _take_log_level(args: list[str]) -> str | None:
    """Remove ``--log-level LEVEL`` (or ``--log-level=LEVEL``) from ``args``:
    it applies to the window and every command alike."""
    for i, arg in enumerate(args):
        if arg == "--log-level" and i + 1 < len(args):
            level = args[i + 1]
            del args[i : i + 2]
            return level
        if arg.startswith("--log-level="):
            del args[i]
            return arg.split("=", 1)[1]
    return None


if __name__ == "__main__":
    sys.exit(main())
