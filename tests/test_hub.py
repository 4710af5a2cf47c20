"""Models from the Hub: search, files, and pulls that resume and verify,
against a local server that speaks the Hub's protocol (``HF_ENDPOINT``)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localchat.core.models import hub, library, transfer
from localchat.testing.hub_server import FakeHub, blob, sha256

MB = 2**20


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("LOCALCHAT_HOME", str(home))
    return home


def cli(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "localchat", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
    )


def one_line_error(proc: subprocess.CompletedProcess[str], text: str) -> None:
    """The error is one line, the last on stderr (progress lines may precede it)."""
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == [lines[-1]] and text in lines[-1], proc.stderr
    assert "Traceback" not in proc.stderr


def models_on_disk(home: Path) -> list[str]:
    folder = home / "models"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# -- search and files ---------------------------------------------------------------


def test_search_sorts_by_downloads_likes_or_recent(fake_hub: FakeHub, home: Path) -> None:
    fake_hub.add("a/llama-GGUF", {}, downloads=10, likes=300, last_modified="2026-03-01T00:00:00Z")
    fake_hub.add("b/llama-GGUF", {}, downloads=500, likes=2, last_modified="2026-01-01T00:00:00Z")
    fake_hub.add("c/mistral-GGUF", {}, downloads=900, likes=5)
    assert [r.repo_id for r in hub.search("llama")] == ["b/llama-GGUF", "a/llama-GGUF"]
    assert hub.search("llama", sort="likes")[0].repo_id == "a/llama-GGUF"
    assert hub.search("llama", sort="recent")[0].repo_id == "a/llama-GGUF"
    proc = cli("models", "search", "llama", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["repo_id"] for r in rows] == ["b/llama-GGUF", "a/llama-GGUF"]
    assert rows[0]["downloads"] == 500


def test_files_parse_quants_and_group_split_files(fake_hub: FakeHub) -> None:
    fake_hub.add(
        "org/Model-GGUF",
        {
            "README.md": b"# hi",
            "Model-Q4_K_M.gguf": blob(3000),
            "Model-IQ3_XS.gguf": blob(2000, 1),
            "Model-bf16.gguf": blob(9000, 2),
            "Q8_0/Model-Q8_0-00001-of-00002.gguf": blob(4000, 3),
            "Q8_0/Model-Q8_0-00002-of-00002.gguf": blob(1000, 4),
            "Model-Q6_K-00001-of-00002.gguf": blob(100, 5),  # its part 2 is missing
            "mmproj-Model-f16.gguf": blob(500, 6),
        },
    )
    models = hub.files("org/Model-GGUF")
    assert [(m.name, m.quant, m.size) for m in models] == [
        ("Model-IQ3_XS.gguf", "IQ3_XS", 2000),
        ("Model-Q4_K_M.gguf", "Q4_K_M", 3000),
        ("Model-Q8_0-00001-of-00002.gguf", "Q8_0", 5000),
        ("Model-bf16.gguf", "BF16", 9000),
    ]
    split = models[2]
    assert split.split and [p.path for p in split.parts] == [
        "Q8_0/Model-Q8_0-00001-of-00002.gguf",
        "Q8_0/Model-Q8_0-00002-of-00002.gguf",
    ]
    assert models[1].parts[0].sha256 == sha256(
        fake_hub.repos["org/Model-GGUF"].files["Model-Q4_K_M.gguf"]
    )
    for name, quant in [
        ("x.Q5_K_S.gguf", "Q5_K_S"),
        ("x-q4_0.gguf", "Q4_0"),
        ("x-IQ4_NL.gguf", "IQ4_NL"),
        ("x-Q2_K.gguf", "Q2_K"),
        ("x-F16.gguf", "F16"),
        ("x-Q3_K_XL.gguf", "Q3_K_XL"),
        ("model.gguf", "?"),
    ]:
        assert hub.parse_quant(name) == quant


def test_a_listing_that_escapes_the_models_folder_is_refused(fake_hub: FakeHub, home: Path) -> None:
    fake_hub.add("evil/x-GGUF", {"../../x.gguf": blob(100), "ok.gguf": blob(100, 1)})
    proc = cli("models", "files", "evil/x-GGUF")
    one_line_error(proc, "would land outside the models folder")
    proc = cli("models", "pull", "evil/x-GGUF", "ok.gguf")
    one_line_error(proc, "would land outside the models folder")
    assert models_on_disk(home) == []


# -- pull ---------------------------------------------------------------------------


def test_pull_downloads_verifies_and_installs(fake_hub: FakeHub, home: Path) -> None:
    data = blob(3 * MB)
    fake_hub.add("org/M-GGUF", {"M-Q4_K_M.gguf": data, "M-Q8_0.gguf": blob(MB, 1)})
    proc = cli("models", "pull", "org/M-GGUF", "--quant", "q4_k_m")
    assert proc.returncode == 0, proc.stderr
    assert "installed M-Q4_K_M" in proc.stdout
    assert "100.0%" in proc.stderr  # the progress bar (not a terminal: a line per 10%)
    assert models_on_disk(home) == ["M-Q4_K_M.gguf"]
    assert (home / "models" / "M-Q4_K_M.gguf").read_bytes() == data
    assert library.installed() == [home / "models" / "M-Q4_K_M.gguf"]
    again = cli("models", "pull", "org/M-GGUF", "M-Q4_K_M.gguf")
    one_line_error(again, "already installed")
    which = cli("models", "pull", "org/M-GGUF")
    one_line_error(which, "pass --quant or a file name")


def test_killed_pull_resumes_without_fetching_again(fake_hub: FakeHub, home: Path) -> None:
    data = blob(8 * MB)
    fake_hub.add("org/M-GGUF", {"M-Q4_K_M.gguf": data})
    fake_hub.bytes_per_s = 4 * MB  # two seconds for the whole file
    proc = subprocess.Popen(
        [sys.executable, "-m", "localchat", "models", "pull", "org/M-GGUF", "M-Q4_K_M.gguf"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    partial = home / "models" / "M-Q4_K_M.gguf.part"
    deadline = time.monotonic() + 60
    while (not partial.exists() or partial.stat().st_size < 2 * MB) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    had = partial.stat().st_size
    while not fake_hub.served and time.monotonic() < deadline:  # the server saw the hang-up
        time.sleep(0.05)
    assert 2 * MB <= had < len(data)
    assert library.installed() == []  # a .part is never a model
    fake_hub.bytes_per_s = 0
    fake_hub.served.clear()
    done = cli("models", "pull", "org/M-GGUF", "M-Q4_K_M.gguf")
    assert done.returncode == 0, done.stderr
    assert (home / "models" / "M-Q4_K_M.gguf").read_bytes() == data
    # The second pull asked only for what was missing.
    assert fake_hub.served == [("M-Q4_K_M.gguf", had, len(data) - had)]
    assert models_on_disk(home) == ["M-Q4_K_M.gguf"]


def test_a_dropped_connection_keeps_the_part_and_resumes(fake_hub: FakeHub, home: Path) -> None:
    data = blob(2 * MB)
    fake_hub.add("org/M-GGUF", {"M-Q4_0.gguf": data})
    fake_hub.drop_after["M-Q4_0.gguf"] = MB + 12345
    proc = cli("models", "pull", "org/M-GGUF", "M-Q4_0.gguf")
    one_line_error(proc, "closed the connection early")
    assert "pull again to resume" in proc.stderr
    partial = home / "models" / "M-Q4_0.gguf.part"
    had = partial.stat().st_size  # what arrived, less a block still being read
    assert MB // 2 <= had <= MB + 12345
    del fake_hub.drop_after["M-Q4_0.gguf"]
    fake_hub.served.clear()
    proc = cli("models", "pull", "org/M-GGUF", "M-Q4_0.gguf")
    assert proc.returncode == 0, proc.stderr
    assert fake_hub.served == [("M-Q4_0.gguf", had, len(data) - had)]
    assert (home / "models" / "M-Q4_0.gguf").read_bytes() == data


def test_a_checksum_mismatch_deletes_the_download(fake_hub: FakeHub, home: Path) -> None:
    fake_hub.add("org/M-GGUF", {"M-Q4_0.gguf": blob(MB)}, corrupt={"M-Q4_0.gguf"})
    proc = cli("models", "pull", "org/M-GGUF", "M-Q4_0.gguf")
    one_line_error(proc, "failed its checksum")
    assert models_on_disk(home) == []


def test_missing_repos_and_files_are_one_line_errors(fake_hub: FakeHub, home: Path) -> None:
    fake_hub.add("org/M-GGUF", {"M-Q4_0.gguf": blob(1000)})
    one_line_error(cli("models", "files", "org/Nope-GGUF"), "no model repository org/Nope-GGUF")
    one_line_error(cli("models", "pull", "org/M-GGUF", "Other.gguf"), "no GGUF file Other.gguf")
    one_line_error(cli("models", "pull", "org/M-GGUF", "--quant", "Q8_0"), "no Q8_0 file")


def test_gated_repos_say_what_to_do_and_work_with_a_token(fake_hub: FakeHub, home: Path) -> None:
    data = blob(1000)
    fake_hub.add("meta/Gated-GGUF", {"G-Q4_0.gguf": data}, gated=True)
    proc = cli("models", "pull", "meta/Gated-GGUF", "G-Q4_0.gguf")
    one_line_error(proc, "meta/Gated-GGUF is gated: accept its terms")
    assert "HF_TOKEN" in proc.stderr
    proc = cli("models", "pull", "meta/Gated-GGUF", "G-Q4_0.gguf", HF_TOKEN=FakeHub.TOKEN)
    assert proc.returncode == 0, proc.stderr
    assert (home / "models" / "G-Q4_0.gguf").read_bytes() == data


def test_offline_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = cli("models", "search", "llama", HF_ENDPOINT=f"http://127.0.0.1:{port}")
    one_line_error(proc, "the Hugging Face Hub cannot be reached (no network?)")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr  # no retry chatter


def test_split_models_install_all_parts_and_list_once(fake_hub: FakeHub, home: Path) -> None:
    one, two = blob(MB, 1), blob(MB // 2, 2)
    fake_hub.add(
        "org/Big-GGUF",
        {"Big-Q4_K_M-00001-of-00002.gguf": one, "Big-Q4_K_M-00002-of-00002.gguf": two},
    )
    proc = cli("models", "pull", "org/Big-GGUF", "--quant", "Q4_K_M")
    assert proc.returncode == 0, proc.stderr
    first = home / "models" / "Big-Q4_K_M-00001-of-00002.gguf"
    assert first.read_bytes() == one
    assert (home / "models" / "Big-Q4_K_M-00002-of-00002.gguf").read_bytes() == two
    assert library.installed() == [first]  # one model, by its first part
    (home / "models" / "Big-Q4_K_M-00002-of-00002.gguf").unlink()
    assert library.installed() == []  # incomplete: not offered


def test_not_enough_disk_space_is_said_before_starting(
    fake_hub: FakeHub, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    fake_hub.add("org/M-GGUF", {"M-Q4_0.gguf": blob(MB)})
    model = hub.choose(hub.files("org/M-GGUF"), filename="M-Q4_0.gguf", quant=None)
    real = shutil.disk_usage
    monkeypatch.setattr(
        transfer.shutil,
        "disk_usage",
        lambda p: real(p)._replace(free=10 * MB),  # type: ignore[attr-defined]
    )
    with pytest.raises(transfer.DownloadError, match=r"not enough disk space for M-Q4_0\.gguf"):
        transfer.pull(model)
    assert fake_hub.served == []


def test_a_full_disk_mid_download_keeps_the_part(
    fake_hub: FakeHub, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = blob(3 * MB)
    fake_hub.add("org/M-GGUF", {"M-Q4_0.gguf": data})
    model = hub.choose(hub.files("org/M-GGUF"), filename="M-Q4_0.gguf", quant=None)
    real_open = transfer._open_part

    def filling(path: Path):  # a disk that fills up after 1 MB
        f = real_open(path)
        write = f.write

        def limited(block: bytes) -> int:
            if f.tell() + len(block) > MB:
                raise OSError(errno.ENOSPC, "No space left on device")
            return write(block)

        f.write = limited  # type: ignore[method-assign]
        return f

    monkeypatch.setattr(transfer, "_open_part", filling)
    with pytest.raises(transfer.DownloadError, match="the disk is full") as err:
        transfer.pull(model)
    assert "\n" not in str(err.value)
    monkeypatch.setattr(transfer, "_open_part", real_open)
    path = transfer.pull(model)
    assert path.read_bytes() == data


def test_pause_keeps_and_cancel_deletes(fake_hub: FakeHub, home: Path) -> None:
    fake_hub.add("org/M-GGUF", {"M-Q4_0.gguf": blob(4 * MB)})
    fake_hub.bytes_per_s = 8 * MB
    model = hub.choose(hub.files("org/M-GGUF"), filename="M-Q4_0.gguf", quant=None)
    partial = home / "models" / "M-Q4_0.gguf.part"
    for action, kept in (("pause", True), ("cancel", False)):
        control = transfer.Control()

        def stop_soon(
            p: transfer.Progress, control: transfer.Control = control, action: str = action
        ) -> None:
            if p.done > MB:
                getattr(control, action)()

        with pytest.raises(transfer.DownloadStopped):
            transfer.pull(model, on_progress=stop_soon, control=control)
        assert partial.exists() == kept
    assert library.installed() == []


def test_models_in_the_hugging_face_cache_are_found(
    home: Path, tmp_path: Path, tiny_model: Path
) -> None:
    """GGUF files another tool downloaded into the HF cache are listed and
    usable by name, without copying."""
    repo = tmp_path / "hf-cache" / "models--org--Tiny-GGUF"
    commit = "0123456789abcdef0123456789abcdef01234567"
    data = tiny_model.read_bytes()
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / sha256(data)).write_bytes(data)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "Tiny-Q8_0.gguf").symlink_to(Path("../../blobs") / sha256(data))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    env = {"HF_HUB_CACHE": str(tmp_path / "hf-cache"), "LOCALCHAT_HOME": str(home)}
    proc = cli("models", "list", "--json", **env)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [(r["name"], r["source"]) for r in rows] == [("Tiny-Q8_0", "hf-cache")]
    assert rows[0]["path"] == str(snapshot / "Tiny-Q8_0.gguf")
    info = cli("info", "Tiny-Q8_0", "--json", **env)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["path"] == str(snapshot / "Tiny-Q8_0.gguf")


def test_the_catalog_names_hub_repos_with_valid_settings() -> None:
    """Every curated entry names a repository and a quantization the file
    parser understands, with facts and settings that are valid ones."""
    from localchat.core.models import catalog

    found = catalog.entries()
    assert len(found) >= 8
    assert len({e.repo_id for e in found}) == len(found)
    for e in found:
        owner, _, name = e.repo_id.partition("/")
        assert owner and name and "GGUF" in name.upper()
        assert hub.parse_quant(f"x-{e.quant}.gguf") == e.quant
        assert 6e9 <= e.parameters <= 15e9 and e.context >= 4096
        assert e.generation().to_dict()  # validated against the declaration
    r1 = next(e for e in found if "R1" in e.name)
    assert r1.generation().temperature == 0.6 and r1.generation().system_prompt == ""


def test_bytes_reach_the_disk_while_downloading(
    fake_hub: FakeHub, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Written and hashed off the network thread, flushed as they come: the
    file is whole and verified, and the disk was asked to catch up on the way."""
    data = blob(5 * MB + 123)
    fake_hub.add("org/M-GGUF", {"M-Q4_0.gguf": data})
    (model,) = hub.files("org/M-GGUF")
    syncs: list[int] = []
    real = getattr(os, "fdatasync", os.fsync)
    # A link of 25 MB/s: a megabyte every 40 ms. Over loopback on a busy
    # machine the whole file could be written before the flusher thread first
    # ran, and its requests (coalesced by design) would count once.
    fake_hub.bytes_per_s = 25 * MB
    monkeypatch.setattr(transfer._Sink, "FLUSH_EVERY", MB)
    monkeypatch.setattr(os, "fdatasync", lambda fd: (syncs.append(fd), real(fd))[1], raising=False)
    path = transfer.pull(model)
    assert sha256(path.read_bytes()) == sha256(data)
    assert len(syncs) >= 2
