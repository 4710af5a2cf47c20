"""Without a network the Hub fails fast: search, files and pulls say so in one
line within two seconds (no retries, no retry chatter), in the core and the
command line. The window's side is in ``test_model_manager``."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from localchat.core.models import hub, network, partials, transfer
from localchat.testing.hub_server import FakeHub, blob

MB = 2**20
UNREACHABLE = "the Hugging Face Hub cannot be reached (no network?): "


def closed_port() -> int:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=["unresolvable", "closed port"])
def offline(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``HF_ENDPOINT`` at a host that cannot be looked up, or at a closed port."""
    if request.param == "unresolvable":
        url = "http://no-such-host.invalid"
    else:
        url = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("HF_ENDPOINT", url)
    network.forget()
    yield url
    network.forget()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LOCALCHAT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def fails_fast(call: Callable[..., object], *args: object) -> str:
    started = time.monotonic()
    with pytest.raises(hub.HubError) as caught:
        call(*args)
    assert time.monotonic() - started < 2.0
    message = str(caught.value)
    assert message.startswith(UNREACHABLE) and "\n" not in message
    return message


def test_search_and_files_fail_at_once(offline: str) -> None:
    said = fails_fast(hub.search, "llama")
    if "invalid" in offline:
        assert "cannot look up no-such-host.invalid" in said
    else:
        assert f"cannot connect to {offline.removeprefix('http://')}" in said
    fails_fast(hub.files, "org/Model-GGUF")


def test_a_pull_fails_at_once_and_keeps_what_it_has(
    offline: str, home: Path, fake_hub_model: hub.RemoteModel
) -> None:
    folder = home / "models"
    folder.mkdir(parents=True)
    part = fake_hub_model.parts[0]
    partial = partials.part_path(folder, part)
    partials.resumable(partial, fake_hub_model, part)  # the sidecar an earlier try wrote
    partial.write_bytes(b"x" * 1000)  # and its bytes
    fails_fast(transfer.pull, fake_hub_model)
    assert partial.read_bytes() == b"x" * 1000
    assert partials.interrupted(folder) == [(fake_hub_model, 1000)]  # to resume later


@pytest.fixture
def fake_hub_model(offline: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[hub.RemoteModel]:
    """A model as the Hub listed it while it could be reached."""
    with FakeHub() as server:
        server.add("org/M-GGUF", {"M-Q4_0.gguf": blob(MB)})
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        (model,) = hub.files("org/M-GGUF")
    monkeypatch.setenv("HF_ENDPOINT", offline)
    yield model


@pytest.mark.parametrize("action", [["search", "llama"], ["files", "org/Model-GGUF"]])
def test_the_command_line_says_one_line_and_exits_1(
    offline: str, home: Path, action: list[str]
) -> None:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "localchat", "models", *action],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HF_ENDPOINT": offline},
    )
    assert time.monotonic() - started < 15  # starting Python included; not ~24 s of retries
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: " + UNREACHABLE), proc.stderr


def test_a_reachable_hub_is_checked_once_for_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    probes: list[tuple[str, int]] = []

    def probe(host: str, port: int, *, timeout: float) -> str | None:
        probes.append((host, port))
        return "cannot look up elsewhere.example" if host == "elsewhere.example" else None

    monkeypatch.setattr(network, "_probe", probe)
    network.forget()
    assert network.problem("https://hub.example/api") is None
    assert network.problem("https://hub.example/api/models") is None
    assert network.problem("https://elsewhere.example") == "cannot look up elsewhere.example"
    assert probes == [("hub.example", 443), ("elsewhere.example", 443)]
    assert network.problem("http://127.0.0.1:8080") is None  # loopback: every time
    assert network.problem("http://127.0.0.1:8080") is None
    assert probes[2:] == [("127.0.0.1", 8080)] * 2
    network.forget()


def test_a_proxy_is_what_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        for key in (name, name.upper()):
            monkeypatch.delenv(key, raising=False)
    assert network._target("https://huggingface.co") == ("huggingface.co", 443)
    monkeypatch.setenv("https_proxy", "http://proxy.corp:3128")
    assert network._target("https://huggingface.co") == ("proxy.corp", 3128)
    monkeypatch.setenv("no_proxy", "huggingface.co")
    assert network._target("https://huggingface.co") == ("huggingface.co", 443)


def test_retry_warnings_stay_off_the_terminal(caplog: pytest.LogCaptureFixture) -> None:
    network.quiet_retries()
    http = logging.getLogger("huggingface_hub.utils._http")
    with caplog.at_level(logging.DEBUG):
        http.warning("'[Errno -2] Name or service not known' thrown while requesting GET x")
        http.warning("Retrying in 1s [Retry 1/5].")
        http.warning("something else")
    kept = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert ("huggingface_hub.utils._http", logging.WARNING, "something else") in kept
    assert not any(n == "huggingface_hub.utils._http" and "Retry" in m for n, _, m in kept)
    assert any(n == network.__name__ and "Retrying in 1s" in m for n, _, m in kept)


def test_a_look_up_that_hangs_is_given_up_within_2_s(monkeypatch: pytest.MonkeyPatch) -> None:
    """A resolver that never answers (a dead DNS server) is not waited for:
    getaddrinfo has no timeout of its own."""
    monkeypatch.setenv("HF_ENDPOINT", "http://hub.example.org")
    network.forget()
    real = socket.getaddrinfo

    def hangs(host: str, *args: object, **kwargs: object) -> object:
        if host == "hub.example.org":
            time.sleep(10)
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", hangs)
    said = fails_fast(hub.search, "llama")
    assert "looking up hub.example.org took longer than 1.5 s" in said
    network.forget()
