"""``localchat``: no arguments opens the window; a command runs the CLI."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    if getattr(sys, "frozen", False):  # the engine's worker process, in the bundle
        import multiprocessing  # (only then: the window starts without it)

        multiprocessing.freeze_support()
    args = sys.argv[1:] if argv is None else argv
    if not args:
        from localchat.ui.display_check import check

        if problem := check():  # before Qt aborts without naming what it lacks
            print(problem, file=sys.stderr)
            return 1
        from localchat.ui.app import run

        return run()
    from localchat.cli.main import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
