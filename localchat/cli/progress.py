"""Progress on the terminal for long commands (downloads, training), and how
an interrupted training ends."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from localchat.core.errors import EXIT_INTERRUPTED
from localchat.core.trainer.progress import Progress, done_line, info_line
from localchat.core.units import clock


class ProgressLine:
    """Rewritten in place on a terminal; a line every tenth of the way
    otherwise, so logs stay readable."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.tty = out.isatty()
        self.tenth = -1
        self.shown = False

    def update(self, line: str, share: float) -> None:
        if self.tty:
            self.out.write("\r" + line + " " * 4)
            self.shown = True
        elif int(share * 10) > self.tenth:
            self.tenth = int(share * 10)
            self.out.write(line + "\n")
        self.out.flush()

    def close(self) -> None:
        if self.shown:
            self.out.write("\n")
            self.out.flush()


class TrainBar(ProgressLine):
    """The trainer's progress: a JSON line per step on ``json_out`` (``--json``),
    else the progress line on ``out``."""

    def __init__(self, out: IO[str], *, json_out: IO[str] | None) -> None:
        super().__init__(out)
        self.json_out = json_out

    def show(self, p: Progress) -> None:
        if self.json_out is not None:
            self.json_out.write(p.to_json() + "\n")
            self.json_out.flush()
            return
        held = f"  held-out {p.heldout_loss:.3f}" if p.heldout_loss is not None else ""
        if p.step == 0:
            print(f"held-out loss before training: {p.heldout_loss:.3f}", file=self.out)
            return
        self.update(
            f"step {p.step}/{p.steps}  loss {p.loss:.3f}{held}  lr {p.lr:.2e}  "
            f"{p.tokens_per_s:,.0f} tok/s  ETA {clock(p.eta_s, hours=True)}",
            p.step / p.steps,
        )


@contextmanager
def training(json_out: bool) -> Iterator[tuple[threading.Event, TrainBar]]:
    """While a training runs: Ctrl+C sets the event (the trainer stops after
    the step and keeps its checkpoint) and the bar shows each step."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda _s, _f: stop.set())
    bar = TrainBar(sys.stderr, json_out=sys.stdout if json_out else None)
    try:
        yield stop, bar
    finally:
        signal.signal(signal.SIGINT, previous)
        bar.close()


def stopped(step: int, steps: int, checkpoint: Path) -> int:
    """Say where an interrupted run stopped; its exit status."""
    print(
        f"stopped at step {step} of {steps}; the checkpoint {checkpoint} is saved: "
        "run the same command again to go on",
        file=sys.stderr,
    )
    return EXIT_INTERRUPTED


def say(json_out: bool, line: str) -> None:
    """A line the trainer says before it starts: ``{"info": ...}`` on stdout
    with ``--json``, else on stderr."""
    if json_out:
        print(info_line(line), flush=True)
    else:
        print(line, file=sys.stderr, flush=True)


def print_done(summary: Mapping[str, Any]) -> None:
    """The summary as the last ``--json`` line."""
    print(done_line(dict(summary)))
