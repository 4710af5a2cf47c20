"""The Train pages count the data's files on a job: a folder as big as a
home directory must not freeze the window (issue 20)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from localchat.core.units import human_size
from localchat.ui.train.files_survey import FilesSurvey, files_summary

TEXT = {".txt", ".md"}


def test_the_summary_counts_files_and_the_folders_text(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("abc")
    folder = tmp_path / "notes"
    (folder / "deep").mkdir(parents=True)
    (folder / "one.md").write_text("12345")
    (folder / "deep" / "two.txt").write_text("1234567")
    (folder / "skip.bin").write_bytes(b"\0" * 100)  # not text: not counted
    listed = [str(tmp_path / "a.txt"), str(folder), str(tmp_path / "gone.txt")]
    assert files_summary(listed, TEXT) == f"2 files and 1 folder (4 files), {human_size(15)}"


def test_a_slow_folder_is_counted_off_the_gui_thread(
    qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "huge"
    folder.mkdir()
    (folder / "one.txt").write_text("words")
    release, walking = threading.Event(), threading.Event()
    walked_on: list[threading.Thread] = []
    real_rglob = Path.rglob

    def slow_rglob(self: Path, pattern: str):  # a disk's worth of files
        walked_on.append(threading.current_thread())
        walking.set()
        assert release.wait(10)
        return real_rglob(self, pattern)

    monkeypatch.setattr(Path, "rglob", slow_rglob)
    survey = FilesSurvey(TEXT)
    assert survey.summary([str(folder)]) == "1 file or folder (counting…)"  # at once
    assert walking.wait(5)
    qtbot.wait(50)  # the GUI thread goes on while the folder is walked
    assert survey.summary([str(folder)]) == "1 file or folder (counting…)"  # not asked twice
    with qtbot.waitSignal(survey.ready, timeout=5000):
        release.set()
    assert survey.summary([str(folder)]) == f"1 folder (1 file), {human_size(5)}"
    assert walked_on and walked_on[0] is not threading.main_thread()
    assert len(walked_on) == 1
