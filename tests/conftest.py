"""Shared fixtures: a private LOCALCHAT_HOME and small models written here."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from localchat.core.chat.store import ChatStore
from localchat.core.engine.client import Engine
from localchat.core.settings import AppSettings
from localchat.testing.hub_server import FakeHub
from localchat.testing.tiny_models import fixture_template, write_llama_gguf


@pytest.fixture(scope="session", autouse=True)
def localchat_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test (and every worker process it starts) uses a scratch data folder."""
    home = tmp_path_factory.mktemp("home")
    # An empty Hugging Face cache too: models this machine's other tools
    # downloaded must not show up in the tests' model lists.
    # No bundled demo model either, unless a test asks for one.
    scratch = {
        "LOCALCHAT_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hf-cache"),
        "LOCALCHAT_DEMO_MODEL": "",
        # Nor the models a developer keeps in this checkout's models/ folder.
        "LOCALCHAT_CHECKOUT_MODELS": "0",
    }
    old = {key: os.environ.get(key) for key in scratch}
    os.environ.update(scratch)
    yield home
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_model(models_dir: Path) -> Path:
    """Byte-level vocabulary, ChatML template: the fastest model there is."""
    return write_llama_gguf(models_dir / "tiny.gguf")


@pytest.fixture(scope="session")
def r1_model(models_dir: Path) -> Path:
    """DeepSeek-R1-Distill's template, whose prompt opens <think>: a random
    model never closes it by itself (what a thinking budget is tested on)."""
    return write_llama_gguf(
        models_dir / "r1-distill-tiny.gguf",
        chat_template=fixture_template("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B"),
        suppress_special=True,
        ascii_only=True,
    )


@pytest.fixture(scope="session")
def phi3_model(models_dir: Path) -> Path:
    """Phi-3's real tokenizer and chat template."""
    return write_llama_gguf(models_dir / "phi3.gguf", vocab="phi-3")


@pytest.fixture(scope="session")
def llama3_model(models_dir: Path) -> Path:
    """Llama 3's real tokenizer with the Llama 3.1 Instruct chat template."""
    return write_llama_gguf(
        models_dir / "llama3.gguf",
        vocab="llama-bpe",
        chat_template=fixture_template("meta-llama-Llama-3.1-8B-Instruct"),
    )


@pytest.fixture(scope="session")
def mistral_model(models_dir: Path) -> Path:
    """Llama 2's SentencePiece tokenizer with Mistral Nemo's template (strict
    alternation of roles, the system prompt folded into the last user turn)."""
    return write_llama_gguf(
        models_dir / "mistral.gguf",
        vocab="llama-spm",
        chat_template=fixture_template("mistralai-Mistral-Nemo-Instruct-2407"),
    )


@pytest.fixture(scope="session")
def slow_model(models_dir: Path) -> Path:
    """Big enough that a prompt of a few thousand tokens takes over a second;
    decisive (greedy replies do not depend on how the prompt was batched) and
    never ends a reply by itself."""
    return write_llama_gguf(
        models_dir / "slow.gguf",
        n_embd=512,
        n_layer=8,
        n_head=8,
        n_head_kv=4,
        n_ff=1408,
        logit_scale=40.0,
        suppress_special=True,
    )


@pytest.fixture
def engine() -> Iterator[Engine]:
    with Engine() as e:
        yield e


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    """A local server speaking the Hub's protocol, selected with HF_ENDPOINT."""
    with FakeHub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        yield server


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own data folder (a module may define its own)."""
    monkeypatch.setenv("LOCALCHAT_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture
def parts(home: Path) -> Iterator[tuple[ChatStore, Engine, AppSettings]]:
    """What the window is made of: a chat store, an engine, the settings."""
    with ChatStore(home / "chats.sqlite3") as store, Engine() as engine:
        yield store, engine, AppSettings(home / "settings.json")
