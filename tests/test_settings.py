"""App settings: defaults, per-model overrides, window state; never fatal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from localchat.core.errors import SettingError
from localchat.core.params import GenerationSettings
from localchat.core.settings import DEMO_SETTINGS, AppSettings


def test_defaults_then_app_wide_then_per_model(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    s = AppSettings(path)
    assert s.generation() == GenerationSettings()
    s.set_generation(temperature=0.3, system_prompt="Be brief.")
    s.set_generation("/models/mistral-7b.Q4_K_M.gguf", temperature=0.9, ctx=8192)
    again = AppSettings(path)  # persisted
    assert again.generation().temperature == 0.3
    mistral = again.generation("/elsewhere/mistral-7b.Q4_K_M.gguf")  # by file name
    assert (mistral.temperature, mistral.ctx, mistral.system_prompt) == (0.9, 8192, "Be brief.")
    assert again.generation("llama.gguf").temperature == 0.3
    again.reset("mistral-7b.Q4_K_M.gguf")
    assert AppSettings(path).generation("mistral-7b.Q4_K_M.gguf").temperature == 0.3
    assert again.defaults("mistral-7b.Q4_K_M.gguf").temperature == 0.3  # app-wide stays
    again.reset()
    assert AppSettings(path).generation() == GenerationSettings()


def test_a_recommendation_sits_under_the_users_choices(tmp_path: Path) -> None:
    """The catalog's recommended settings apply to its model under what the
    user chose, and "Reset to defaults" returns to them, not to 0.7."""
    path = tmp_path / "settings.json"
    s = AppSettings(path)
    s.recommend("/models/qwen.gguf", temperature=0.6, top_k=20)
    s.set_generation("/models/qwen.gguf", temperature=1.1)
    qwen = AppSettings(path).generation("/other/qwen.gguf")  # persisted, by file name
    assert (qwen.temperature, qwen.top_k) == (1.1, 20)
    assert AppSettings(path).generation("llama.gguf").top_k == GenerationSettings().top_k
    s.reset("/models/qwen.gguf")
    assert s.defaults("qwen.gguf") == s.generation("qwen.gguf")
    assert (s.generation("qwen.gguf").temperature, s.generation("qwen.gguf").top_k) == (0.6, 20)
    with pytest.raises(SettingError):
        s.recommend("/models/qwen.gguf", top_p=3.0)
    assert AppSettings(path).generation("qwen.gguf").top_k == 20  # nothing stored


def test_bad_values_are_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    s = AppSettings(tmp_path / "settings.json")
    with pytest.raises(SettingError, match="top_p must be at most 1"):
        s.set_generation(top_p=3.0)
    assert not (tmp_path / "settings.json").exists()


def test_stale_stored_values_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text(
        json.dumps({"generation": {"temperature": 9, "top_k": 7, "removed_setting": 1}})
    )
    s = AppSettings(path)
    assert s.problem is None
    assert s.generation().top_k == 7 and s.generation().temperature == 0.7


def test_window_state(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    AppSettings(path).set_ui("last_chat", 42)
    assert AppSettings(path).ui("last_chat") == 42
    assert AppSettings(path).ui("missing", "x") == "x"


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"models": 3}'])
def test_a_broken_file_is_set_aside(tmp_path: Path, content: str) -> None:
    path = tmp_path / "settings.json"
    path.write_text(content)
    s = AppSettings(path)
    assert s.problem and "starting from the defaults" in s.problem and "\n" not in s.problem
    assert s.generation() == GenerationSettings()
    assert (tmp_path / "settings.json.broken").read_text() == content
    s.set_ui("k", 1)
    assert json.loads(path.read_text())["ui"] == {"k": 1}


def test_the_demo_model_has_its_own_settings_under_the_users(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo = tmp_path / "assets" / "localchat-demo.gguf"
    monkeypatch.setenv("LOCALCHAT_DEMO_MODEL", str(demo))
    settings = AppSettings(tmp_path / "settings.json")
    assert settings.generation(str(demo)).temperature == DEMO_SETTINGS["temperature"]
    assert settings.generation(str(tmp_path / "other.gguf")).temperature == 0.7
    settings.set_generation(None, temperature=0.9)  # the user's app-wide choice comes first
    assert settings.generation(str(demo)).temperature == 0.9
    settings.set_generation(str(demo), temperature=0.0)  # and theirs for it
    assert settings.generation(str(demo)).temperature == 0.0
