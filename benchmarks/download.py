"""Download benchmark: our pull against a plain streaming GET of the same file.

Run from the repository root::

    .venv/bin/python benchmarks/download.py              # a 512 MiB file, 3 rounds
    .venv/bin/python benchmarks/download.py --size 64    # MiB
    .venv/bin/python benchmarks/download.py --rate 100   # a 100 MB/s link

The file is served by the local Hub-protocol server (``localchat.testing.
hub_server``), in a process of its own so that it does not share this one's
interpreter lock. Rounds alternate the reference and ours:

- reference: a streaming GET through the same HTTP client huggingface-hub
  uses, each block written to a file (what any downloader has to do);
- ours: ``transfer.pull``, which also hashes every block (sha256) as it arrives,
  keeps a resumable ``.part`` with its sidecar, reports progress, fsyncs, and
  renames the verified file into place.

It prints the median throughput of each and their ratio (goal >= 0.9), and the
cost of verifying: sha256 alone on this machine, and what checking the file
after the download (a second read and hash of the whole file) would add, which
hashing while downloading avoids.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

MIB = 2**20
REPO = "bench/Bench-GGUF"
FILE = "Bench-Q4_K_M.gguf"


def serve(size: int, rate: float, conn: Connection) -> None:
    """The server process: one repository with one file of ``size`` bytes,
    sent at most at ``rate`` bytes per second (0: as fast as it can)."""
    from localchat.testing.hub_server import FakeHub, blob

    hub = FakeHub()
    hub.add(REPO, {FILE: blob(size)})
    hub.bytes_per_s = rate
    hub.start()
    conn.send(hub.url)
    conn.recv()  # until told to stop
    hub.stop()


def plain_get(url: str, dest: Path) -> float:
    """The reference: stream the file to disk, nothing else. Seconds."""
    from huggingface_hub import get_session

    start = time.perf_counter()
    with (
        get_session().stream("GET", url, follow_redirects=True, timeout=30.0) as r,
        dest.open("wb") as out,
    ):
        r.raise_for_status()
        for block in r.iter_bytes():
            out.write(block)
    return time.perf_counter() - start


def ours(folder: Path) -> float:
    from localchat.core.models import hub, transfer

    (model,) = hub.files(REPO)
    start = time.perf_counter()
    transfer.pull(model, dest=folder, on_progress=lambda _p: None)
    return time.perf_counter() - start


def hash_file(path: Path) -> float:
    start = time.perf_counter()
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(MIB):
            digest.update(block)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512, help="file size in MiB (default 512)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--rate", type=float, default=0, help="serve at most this many MB/s (default: no limit)"
    )
    args = parser.parse_args()
    size = args.size * MIB

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=serve, args=(size, args.rate * 1e6, child), daemon=True)
    server.start()
    endpoint = parent.recv()
    os.environ["HF_ENDPOINT"] = endpoint
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    from localchat.core.models import hub

    (model,) = hub.files(REPO)
    url = f"{endpoint}/{REPO}/resolve/{model.revision}/{FILE}"
    refs: list[float] = []
    mine: list[float] = []
    after: list[float] = []
    with tempfile.TemporaryDirectory(prefix="localchat-bench-") as tmp:
        folder = Path(tmp)
        plain_get(url, folder / "warm-up")  # connections, page cache, server warm
        (folder / "warm-up").unlink()
        for _ in range(args.rounds):
            # Each starts with no other file's writes pending.
            os.sync()
            refs.append(plain_get(url, folder / "plain"))
            (folder / "plain").unlink()
            os.sync()
            mine.append(ours(folder))
            after.append(hash_file(folder / FILE))
            (folder / FILE).unlink()
    parent.send("stop")
    server.join(10)

    ref_s, our_s, hash_s = (statistics.median(x) for x in (refs, mine, after))
    mb = size / 1e6
    limit = f", served at most at {args.rate:g} MB/s" if args.rate else ""
    print(f"file: {args.size} MiB from {endpoint}{limit}, {args.rounds} rounds, medians")
    print(f"plain streaming GET to disk:   {mb / ref_s:8.1f} MB/s  ({ref_s:.2f} s)")
    print(f"localchat pull (hash, verify): {mb / our_s:8.1f} MB/s  ({our_s:.2f} s)")
    print(f"ratio ours / plain:            {ref_s / our_s:8.2f}   (goal >= 0.9)")
    print(
        f"verifying after instead (read + sha256 of the file): +{hash_s:.2f} s, "
        f"{hash_s / our_s:.0%} of our download time; hashing while downloading avoids it"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
