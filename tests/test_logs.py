"""The app's log: where it is, what level, and that a bug shown in one line is
also there with its traceback."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from localchat.core import logs
from localchat.core.errors import LocalChatError


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("LOCALCHAT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(logs.LEVEL_ENV, raising=False)
    yield tmp_path / "home"
    root = logging.getLogger("localchat")  # as it was: no file of this test's
    for handler in [h for h in root.handlers if getattr(h, "localchat", False)]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(logging.NOTSET)
    root.propagate = True


def read(path: Path) -> str:
    for handler in logging.getLogger("localchat").handlers:
        handler.flush()
    return path.read_text(encoding="utf-8")


def test_the_log_is_in_the_data_folder_at_the_level_asked(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = logs.setup()
    assert path == home / "logs" / "localchat.log"
    area = logging.getLogger("localchat.core.engine.client")
    area.debug("not at info")
    area.info("loaded a model")
    text = read(path)
    assert "INFO localchat.core.engine.client: loaded a model" in text
    assert "not at info" not in text
    monkeypatch.setenv(logs.LEVEL_ENV, "debug")
    logs.setup()  # again: one handler, the new level
    area.debug("now at debug")
    assert read(path).count("loaded a model") == 1 and "now at debug" in read(path)
    assert logs.setup("warning") == path
    area.info("quiet again")
    assert "quiet again" not in read(path)
    with pytest.raises(LocalChatError, match="unknown log level 'loud'"):
        logs.setup("loud")


def test_the_log_is_rotated(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "MAX_BYTES", 4000)
    path = logs.setup()
    area = logging.getLogger("localchat.ui")
    for i in range(200):
        area.info("line %d %s", i, "x" * 60)
    read(path)
    kept = sorted(p.name for p in path.parent.glob("localchat.log*"))
    assert kept == ["localchat.log", "localchat.log.1", "localchat.log.2", "localchat.log.3"]
    assert all(p.stat().st_size <= 4000 for p in path.parent.glob("localchat.log*"))
    assert "line 199" in read(path)


def test_a_bug_in_a_background_job_is_one_line_for_the_user_and_a_traceback_in_the_log(
    home: Path, qtbot
) -> None:
    from localchat.ui.bridge import JobThread

    path = logs.setup()

    def job(_emit):
        return {}["no such key"]

    thread = JobThread(job)
    with qtbot.waitSignal(thread.failed, timeout=10_000) as failed:
        thread.start()
    thread.wait()
    assert failed.args == ["internal error: KeyError: 'no such key'"]
    text = read(path)
    assert "a background job failed" in text
    assert "Traceback (most recent call last)" in text and "KeyError: 'no such key'" in text


def test_the_command_line_takes_a_log_level_for_any_command(tmp_path: Path) -> None:
    env = {**os.environ, "LOCALCHAT_HOME": str(tmp_path), "QT_QPA_PLATFORM": "offscreen"}
    env.pop(logs.LEVEL_ENV, None)
    done = subprocess.run(
        [sys.executable, "-m", "localchat", "--log-level", "debug", "models", "list", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "logs" / "localchat.log").read_text()
    assert "INFO localchat.main: localchat" in text and "models list" in text
    bad = subprocess.run(
        [sys.executable, "-m", "localchat", "--log-level=loud", "models", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: unknown log level")
    assert "Traceback" not in bad.stderr
