"""Run a bundle's chat on emulated older CPUs and on this one, and say which of
llama.cpp's CPU builds each picked.

    python packaging/older_cpu.py dist/LocalChat                 # Nehalem, Haswell, this CPU
    python packaging/older_cpu.py dist/LocalChat --cpu Westmere --cpu max

A bundle made by ``build.py --backend cpu`` carries every CPU variant of
llama.cpp (SSE4.2 to AMX) and the worker loads the best one for the CPU it
finds; a native build would die with an illegal instruction on a CPU older
than the build machine's. This is the proof: the demo model answers on each
CPU, and the ``backend`` of each turn names the variant (e.g. "CPU · sse42" on
Nehalem, which has no AVX).

How: Debian's ``qemu-user`` (``qemu-x86_64``, with ``QEMU_CPU``) runs the
program. The model runs in a second process the program starts, which a plain
``qemu-x86_64 program`` would start natively; so, for the run, the kernel's
binfmt_misc sends files ending in ``.emulated`` to qemu (registered here and
removed at the end; needs root), and the program is started as a copy of
that name, which its worker process then is too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BINFMT = Path("/proc/sys/fs/binfmt_misc")
RULE = "localchat-emulated"
SUFFIX = "emulated"
ARGS = ("--max-tokens", "8", "--temperature", "0")


def register(qemu: str) -> None:
    if not (BINFMT / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], check=True)
    if (BINFMT / RULE).exists():
        (BINFMT / RULE).write_text("-1")
    (BINFMT / "register").write_text(f":{RULE}:E::{SUFFIX}::{qemu}:")


def unregister() -> None:
    if (BINFMT / RULE).exists():
        (BINFMT / RULE).write_text("-1")


def turn(program: Path, env: dict[str, str], timeout: float) -> tuple[dict, float]:
    t0 = time.perf_counter()
    done = subprocess.run(
        [str(program), "chat", "--prompt", "What does json.dumps do?", "--json", *ARGS],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise SystemExit(f"error: the chat failed ({done.returncode}): {done.stderr[-1500:]}")
    return json.loads(done.stdout), time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, help="the bundle folder (dist/LocalChat)")
    parser.add_argument("--cpu", action="append", help="a qemu CPU model (repeatable)")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        raise SystemExit("error: needs qemu-x86_64 (Debian: apt install qemu-user)")
    program = args.bundle / "localchat"
    if not program.is_file():
        raise SystemExit(f"error: no {program}")
    emulated = program.with_name(f"localchat.{SUFFIX}")
    shutil.copy2(program, emulated)
    home = Path(tempfile.mkdtemp(prefix="localchat-cpu-"))
    base = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
    base["LOCALCHAT_HOME"] = str(home / "data")
    rows = []
    register(qemu)
    try:
        for cpu in args.cpu or ["Nehalem", "Haswell"]:
            got, secs = turn(emulated, {**base, "QEMU_CPU": cpu}, args.timeout)
            rows.append((f"{cpu} (qemu)", got, secs))
            print(f"{cpu}: {got['backend']}, {got['completion_tokens']} tokens", flush=True)
    finally:
        unregister()
        emulated.unlink()
    got, secs = turn(program, base, args.timeout)
    rows.append(("this CPU", got, secs))
    print()
    print(f"{'CPU':24} {'backend':24} {'tokens':>6} {'wall s':>7}  reply")
    for name, got, secs in rows:
        reply = got["reply"].replace("\n", " ")[:30]
        print(f"{name:24} {got['backend']:24} {got['completion_tokens']:6} {secs:7.1f}  {reply!r}")
    return 0


if __name__ == "__main__":
    if os.geteuid() != 0:
        raise SystemExit("error: binfmt_misc needs root")
    sys.exit(main())
