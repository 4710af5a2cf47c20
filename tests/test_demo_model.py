"""The bundled demo model: a fresh install chats offline with a model this
project trained itself (localchat/assets/localchat-demo.gguf)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from localchat.core import paths
from localchat.core.engine.client import Engine
from localchat.core.engine.gguf_info import read_model_info
from localchat.core.params import GenerationSettings

SHIPPED = Path(__file__).resolve().parents[1] / "localchat" / "assets" / "localchat-demo.gguf"


def test_the_shipped_demo_model_is_small_trained_and_chats() -> None:
    assert SHIPPED.is_file(), f"{SHIPPED} is missing (localchat train demo)"
    assert SHIPPED.stat().st_size <= 25 * 2**20
    info = read_model_info(SHIPPED)
    meta = info.metadata
    assert "Python" in meta["general.description"] and meta["general.license"] == "PSF-2.0"
    assert "<|im_start|>" in meta["tokenizer.chat_template"]
    from pydoc_data.topics import topics

    sample = "\n\n".join(topics[k] for k in ("for", "while", "if", "try"))
    with Engine() as engine:
        loaded = engine.load(SHIPPED, GenerationSettings())
        report = engine.perplexity(text=sample, window=256)
        # Trained, not random: far below the vocabulary's size (what guessing gets).
        assert report.perplexity < loaded.n_vocab / 20
        stream = engine.chat(
            [{"role": "user", "content": "What is the for statement in Python?"}],
            GenerationSettings(max_tokens=60, temperature=0.0),
        )
        reply = stream.text()
    assert stream.result is not None and stream.result.completion_tokens > 0
    assert reply.strip() and "<|im_start|>" not in reply


def test_a_fresh_install_uses_the_demo_model(tiny_model: Path, tmp_path: Path) -> None:
    demo = shutil.copy(tiny_model, tmp_path / "localchat-demo.gguf")
    env = {
        **os.environ,
        "LOCALCHAT_HOME": str(tmp_path / "home"),
        paths.DEMO_ENV: str(demo),
    }
    run = [sys.executable, "-m", "localchat"]
    listed = subprocess.run(
        [*run, "models", "list", "--json"], capture_output=True, text=True, env=env, timeout=60
    )
    assert [(m["name"], m["source"]) for m in json.loads(listed.stdout)] == [
        ("localchat-demo", "demo")
    ]
    chat = subprocess.run(
        [*run, "chat", "--prompt", "hello", "--max-tokens", "5", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert chat.returncode == 0, chat.stderr
    assert json.loads(chat.stdout)["completion_tokens"] > 0


def test_the_welcomes_demo_prompts_are_answered_on_their_subject() -> None:
    """The prompts a new chat offers with the demo model were chosen because it
    answers them on their subject (greedy, as they were checked): a retrained
    demo model must still, or the prompts must change."""
    from localchat.ui.empty_state import DEMO_PROMPTS

    subjects = {"os.path.join": "path", "shutil.copy": "copy", "json.dumps": "json"}
    subjects["pathlib"] = "path"
    with Engine() as engine:
        engine.load(SHIPPED, GenerationSettings())
        for prompt in DEMO_PROMPTS:
            subject = next(word for name, word in subjects.items() if name in prompt)
            stream = engine.chat(
                [{"role": "user", "content": prompt}],
                GenerationSettings(max_tokens=40, temperature=0.0),
            )
            reply = stream.text()
            assert subject in reply.lower(), (prompt, reply)
