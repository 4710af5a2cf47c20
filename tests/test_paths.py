"""All user data lives under one folder, which LOCALCHAT_HOME relocates."""

from __future__ import annotations

from pathlib import Path

import platformdirs
import pytest

from localchat.core import paths


def test_localchat_home_relocates_everything(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LOCALCHAT_HOME", str(tmp_path / "data"))
    assert paths.home() == tmp_path / "data"
    for p in (paths.models_dir(), paths.logs_dir(), paths.chats_db(), paths.settings_file()):
        assert p.is_relative_to(tmp_path / "data")
    assert paths.models_dir().is_dir()


def test_default_is_the_platform_data_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("LOCALCHAT_HOME")
    monkeypatch.setattr(platformdirs, "user_data_dir", lambda *a, **k: str(tmp_path / "platform"))
    assert paths.home() == tmp_path / "platform"
