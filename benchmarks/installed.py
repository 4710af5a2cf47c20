"""Does the installed app start as fast as the one in the development venv?

    .venv/bin/python benchmarks/installed.py --installed /usr/bin/localchat
    .venv/bin/python benchmarks/installed.py --installed dist/LocalChat/localchat

The installed program (the .deb's, or a bundle from ``packaging/build.py``) and
``.venv/bin/localchat`` are timed alternately, from starting the process:

1. ``localchat --version``: the interpreter and the CLI's imports.
2. ``localchat chat --prompt hi --max-tokens 1`` on the demo model: the engine's
   worker process started, the model loaded, one token, everything closed.
3. With a display (``DISPLAY``; Xvfb works): ``localchat`` until its window is
   on the screen (polled with ``xwininfo``).

Printed: medians and the ratio installed / venv for each (goal: <= 1.5).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent / "localchat"


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=120)
    return time.perf_counter() - start


def window_shown(program: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen(
        [program], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while time.perf_counter() - start < 60:
            tree = subprocess.run(
                ["xwininfo", "-root", "-tree"], capture_output=True, text=True, env=env
            ).stdout
            if '"LocalChat' in tree:
                return time.perf_counter() - start
            time.sleep(0.01)
        raise SystemExit(f"error: {program} showed no window in 60 s")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--installed", required=True, help="the installed localchat program")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if not VENV.exists():
        raise SystemExit(f"error: no {VENV}; run this with the venv's python")
    home = Path(tempfile.mkdtemp(prefix="localchat-bench-"))
    env = {**os.environ, "LOCALCHAT_HOME": str(home)}
    env.pop("LOCALCHAT_DEMO_MODEL", None)
    measures = {
        "--version": lambda p: timed([p, "--version"], env),
        "a chat turn": lambda p: timed([p, "chat", "--prompt", "hi", "--max-tokens", "1"], env),
    }
    if env.get("DISPLAY") and shutil.which("xwininfo"):
        shown_env = {k: v for k, v in env.items() if k != "QT_QPA_PLATFORM"}
        measures["window shown"] = lambda p: window_shown(p, shown_env)
    else:
        print("(no DISPLAY or xwininfo: the window is not timed)")
    try:
        for name, measure in measures.items():
            times: dict[str, list[float]] = {"installed": [], "venv": []}
            measure(args.installed)  # warm the file cache for both
            measure(str(VENV))
            for i in range(args.runs):
                order = ("installed", "venv") if i % 2 == 0 else ("venv", "installed")
                for which in order:
                    program = args.installed if which == "installed" else str(VENV)
                    times[which].append(measure(program))
            inst, venv = statistics.median(times["installed"]), statistics.median(times["venv"])
            print(
                f"{name:<13} installed {inst * 1000:6.0f} ms   venv {venv * 1000:6.0f} ms   "
                f"ratio {inst / venv:.2f} (goal <= 1.5)"
            )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
