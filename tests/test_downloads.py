"""The download queue: several models queued, one at a time, each paused,
resumed or cancelled on its own; unfinished downloads found again after a
restart. Against the local Hub-protocol server (``HF_ENDPOINT``)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from localchat.core.models import catalog, hub, library, partials, transfer
from localchat.core.models.downloads import Download, Downloads
from localchat.core.settings import AppSettings
from localchat.testing.hub_server import FakeHub, blob, sha256

MB = 2**20


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LOCALCHAT_HOME", str(tmp_path / "home"))
    return tmp_path / "home" / "models"


class Seen:
    """Every change the queue reported, in order."""

    def __init__(self) -> None:
        self.changes: list[Download] = []
        self.lock = threading.Lock()

    def __call__(self, d: Download) -> None:
        with self.lock:
            self.changes.append(d)

    def states(self, name: str) -> list[str]:
        out: list[str] = []
        for d in self.changes:
            if d.name == name and (not out or out[-1] != d.state):
                out.append(d.state)
        return out


def until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_queued_models_download_one_at_a_time_and_install(fake_hub: FakeHub, folder: Path) -> None:
    data = {f"M-{q}.gguf": blob(MB + i, i) for i, q in enumerate(["Q4_0", "Q5_K_M", "Q8_0"])}
    fake_hub.add("o/M-GGUF", data)
    models = hub.files("o/M-GGUF")
    seen = Seen()
    queue = Downloads(seen, folder=folder)
    for m in models:
        queue.add(m)
    assert queue.wait(60)
    assert [d.state for d in queue.items()] == ["done"] * 3
    for name, content in data.items():
        assert (folder / name).read_bytes() == content
        assert queue.get(name).path == folder / name  # type: ignore[union-attr]
    assert sorted(p.name for p in folder.iterdir()) == sorted(data)
    # Never two at once: each started after the one before it ended.
    running: set[str] = set()
    for d in seen.changes:
        if d.state == "downloading":
            running.add(d.name)
        else:
            running.discard(d.name)
        assert len(running) <= 1
    assert [seen.states(n) for n in data] == [["queued", "downloading", "done"]] * 3
    with pytest.raises(transfer.DownloadError, match="already installed"):
        queue.add(models[0])


def test_pause_keeps_the_bytes_and_resume_fetches_only_the_rest(
    fake_hub: FakeHub, folder: Path
) -> None:
    data = blob(6 * MB)
    fake_hub.add("o/Big-GGUF", {"Big-Q4_K_M.gguf": data})
    fake_hub.bytes_per_s = 4 * MB
    (model,) = hub.files("o/Big-GGUF")
    queue = Downloads(folder=folder)
    queue.add(model)
    until(lambda: queue.get(model.name).done > MB)  # type: ignore[union-attr]
    queue.pause(model.name)
    assert queue.wait(10)
    paused = queue.get(model.name)
    assert paused is not None and paused.state == "paused" and "paused" in paused.message
    kept = (folder / "Big-Q4_K_M.gguf.part").stat().st_size
    assert MB < kept < len(data) and paused.done == kept
    assert library.installed() == []  # a .part is never a model
    until(lambda: fake_hub.served)  # the server saw the hang-up
    fake_hub.bytes_per_s = 0
    fake_hub.served.clear()
    queue.resume(model.name)
    assert queue.wait(30)
    assert queue.get(model.name).state == "done"  # type: ignore[union-attr]
    assert fake_hub.served == [("Big-Q4_K_M.gguf", kept, len(data) - kept)]
    assert sha256((folder / "Big-Q4_K_M.gguf").read_bytes()) == sha256(data)


def test_cancel_deletes_running_and_queued_downloads(fake_hub: FakeHub, folder: Path) -> None:
    fake_hub.add("o/A-GGUF", {"A-Q4_0.gguf": blob(6 * MB), "A-Q8_0.gguf": blob(6 * MB + 1, 1)})
    fake_hub.bytes_per_s = 4 * MB
    first, second = hub.files("o/A-GGUF")
    seen = Seen()
    queue = Downloads(seen, folder=folder)
    queue.add(first)
    queue.add(second)
    until(lambda: queue.get(first.name).done > 0)  # type: ignore[union-attr]
    assert queue.get(second.name).state == "queued"  # type: ignore[union-attr]
    queue.cancel(second.name)  # waiting: cancelled at once, nothing fetched
    assert queue.get(second.name).state == "cancelled"  # type: ignore[union-attr]
    queue.cancel(first.name)
    assert queue.wait(10)
    assert queue.get(first.name).state == "cancelled"  # type: ignore[union-attr]
    assert list(folder.iterdir()) == []  # no .part, no sidecar
    until(lambda: fake_hub.served)
    assert [p for p, _, _ in fake_hub.served] == [first.name]
    assert seen.states(second.name) == ["queued", "cancelled"]


def test_a_failure_is_said_and_the_queue_goes_on(fake_hub: FakeHub, folder: Path) -> None:
    repo = fake_hub.add("o/C-GGUF", {"C-Q4_0.gguf": blob(MB), "C-Q5_0.gguf": blob(MB, 1)})
    repo.corrupt.add("C-Q4_0.gguf")
    bad, good = hub.files("o/C-GGUF")
    queue = Downloads(folder=folder)
    queue.add(bad)
    queue.add(good)
    assert queue.wait(30)
    failed = queue.get(bad.name)
    assert failed is not None and failed.state == "failed"
    assert "failed its checksum" in failed.message and "\n" not in failed.message
    assert queue.get(good.name).state == "done"  # type: ignore[union-attr]
    assert sorted(p.name for p in folder.iterdir()) == ["C-Q5_0.gguf"]
    repo.corrupt.clear()
    queue.resume(bad.name)  # a retry
    assert queue.wait(30)
    assert queue.get(bad.name).state == "done"  # type: ignore[union-attr]


def test_an_unfinished_download_is_found_again_after_a_restart(
    fake_hub: FakeHub, folder: Path
) -> None:
    parts = {f"Q-q4_k_m-0000{i}-of-00002.gguf": blob(3 * MB, i) for i in (1, 2)}
    fake_hub.add("o/Q-GGUF", parts)
    fake_hub.bytes_per_s = 4 * MB
    (model,) = hub.files("o/Q-GGUF")
    assert model.split
    queue = Downloads(folder=folder)
    queue.add(model)
    until(lambda: queue.get(model.name).done > 4 * MB)  # type: ignore[union-attr]
    queue.close()  # the app quits: paused, bytes kept
    had = sum(p.stat().st_size for p in folder.glob("*.part"))
    assert 4 * MB < had < 6 * MB

    again = Downloads(folder=folder)  # the next start, without asking the Hub
    (restored,) = again.items()
    assert restored.state == "paused" and restored.done == had
    assert restored.model == model and restored.total == 6 * MB
    until(lambda: len(fake_hub.served) == 2)  # part 1 whole; part 2 until the hang-up
    fake_hub.bytes_per_s = 0
    fake_hub.served.clear()
    again.resume(model.name)
    assert again.wait(30)
    assert again.get(model.name).state == "done"  # type: ignore[union-attr]
    assert sum(sent for _, _, sent in fake_hub.served) == 6 * MB - had
    assert library.installed() == [folder / "Q-q4_k_m-00001-of-00002.gguf"]
    assert Downloads(folder=folder).items() == []


def test_interrupted_ignores_sidecars_that_are_not_ours(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "x.gguf.part.json").write_text("not json")
    (folder / "y.gguf.part.json").write_text(json.dumps({"repo_id": "a/b", "path": "../y.gguf"}))
    escape = {"repo_id": "a/b", "path": "../../y.gguf", "size": 3, "sha256": None}
    (folder / "y.gguf.part.json").write_text(json.dumps(escape))
    assert partials.interrupted(folder) == []
    assert Downloads(folder=folder).items() == []


def test_catalog_settings_are_adopted_under_the_users_choices(tmp_path: Path) -> None:
    settings = AppSettings(tmp_path / "settings.json")
    qwen = catalog.for_repo("qwen/qwen2.5-7b-instruct-gguf")
    assert qwen is not None and qwen.settings
    path = tmp_path / "qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf"
    assert catalog.adopt(path, qwen.repo_id, settings) == qwen.settings
    assert settings.generation(str(path)).temperature == qwen.settings["temperature"]
    settings.set_generation(str(path), temperature=1.3)
    other = tmp_path / "other.gguf"
    settings.set_generation(str(other), top_k=7)
    # The user's choice stands; the rest of the recommendation applies.
    adopted = catalog.adopt(other, qwen.repo_id, settings)
    assert adopted == {k: v for k, v in qwen.settings.items() if k != "top_k"}
    assert settings.generation(str(other)).top_k == 7
    settings.reset(str(other))  # Reset to defaults: back to the recommendation
    assert settings.generation(str(other)).to_dict().items() >= qwen.settings.items()
    assert catalog.adopt(tmp_path / "z.gguf", "someone/else-GGUF", settings) == {}
