"""All user data lives under one folder, which LOCALCHAT_HOME relocates."""

from __future__ import annotations

from pathlib import Path

import platformdirs
import pytest

from localchat.core import paths
from localchat.core.errors import ModelFileError


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


def test_a_source_checkout_lists_the_models_in_its_own_models_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from localchat.core.models import library
    from localchat.testing.tiny_models import write_llama_gguf

    # This very checkout is one (its models/ folder holds the demo model's card).
    monkeypatch.delenv(paths.CHECKOUT_MODELS_ENV)
    assert paths.checkout_models_dir() == Path(__file__).resolve().parents[1] / "models"

    checkout = tmp_path / "checkout"
    (checkout / "models").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text('[project]\nname = "localchat"\n')
    mine = write_llama_gguf(checkout / "models" / "my-dev-model.gguf", n_layer=1)
    monkeypatch.setattr(paths, "SOURCE_ROOT", checkout)
    monkeypatch.setenv("LOCALCHAT_HOME", str(tmp_path / "data"))
    assert library.installed() == [mine]
    assert library.resolve("my-dev") == mine and library.in_checkout(mine)
    with pytest.raises(ModelFileError, match="only installed models are removed"):
        library.remove_model("my-dev")
    assert mine.is_file()

    monkeypatch.setenv(paths.CHECKOUT_MODELS_ENV, "0")  # as the tests run
    assert library.installed() == []
    monkeypatch.delenv(paths.CHECKOUT_MODELS_ENV)
    (checkout / "pyproject.toml").unlink()  # an installed copy: site-packages above it
    assert paths.checkout_models_dir() is None and library.installed() == []
