"""``localchat serve`` run as a user runs it, for the server's tests: a real
process on a free port, its stderr kept for the tests to read."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def install(home: Path, model: Path, name: str) -> Path:
    target = home / "models" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(model, target)
    return target


class Server:
    """A ``localchat serve`` process; ``url`` once it answers."""

    def __init__(self, home: Path, *args: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Open for the server's life: closed by stop().
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115
        env = {**os.environ, "LOCALCHAT_HOME": str(home)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "localchat", "serve", "--port", str(self.port), *args],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            text=True,
            env=env,
        )

    def wait(self, timeout: float = 60, headers: dict[str, str] | None = None) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited: {self.stderr()}")
            try:
                httpx.get(f"{self.url}/api/version", headers=headers, timeout=1)
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError(f"the server did not answer: {self.stderr()}")

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def worker_pids(self) -> list[int]:
        """The engine's worker processes (children started by multiprocessing's spawn)."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.proc.pid and b"spawn_main" in cmdline:
                pids.append(int(entry.name))
        return pids

    def stop(self) -> int:
        """Ctrl+C; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(2)  # Ctrl+C
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode
