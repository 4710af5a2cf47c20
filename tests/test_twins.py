"""Digital twins: one author's texts as a collection, a persona the user can
rewrite, an optional adapter fine-tuned on the same texts, and chats with
the twin grounded in them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from localchat.testing.tiny_models import write_llama_gguf

CORPUS = Path(__file__).parent / "fixtures" / "documents"


def cli(home: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LOCALCHAT_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "localchat", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        input=stdin,
    )


@pytest.fixture
def author(tmp_path: Path) -> Path:
    texts = tmp_path / "texts"
    texts.mkdir()
    for name in ("en-lighthouse-diary.md", "en-harbour-town.md"):
        shutil.copy(CORPUS / name, texts / name)
    return texts


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    write_llama_gguf(home / "models" / "tiny.gguf")
    return home


def test_a_twin_speaks_from_its_texts_with_its_persona(home: Path, author: Path) -> None:
    made = cli(home, "twin", "create", "Ada Quill", "--from", str(author), "-m", "tiny", "--json")
    assert made.returncode == 0, made.stderr
    twin = json.loads(made.stdout)
    assert twin["collection"] == "twin: Ada Quill" and twin["model"] == "tiny"
    assert "Ada Quill" in twin["persona"] and "do not speak of it" in twin["persona"]
    assert [t["name"] for t in json.loads(cli(home, "twin", "list", "--json").stdout)] == [
        "Ada Quill"
    ]
    question = "How often did the supply boat come to the lighthouse?"
    args = ["--json", "--max-tokens", "4", "--temperature", "0", "--prompt", question]
    turn = json.loads(cli(home, "chat", "--twin", "Ada Quill", *args).stdout)
    assert turn["sources"] and all("en-" in s["path"] for s in turn["sources"])
    docs_only = json.loads(cli(home, "chat", "--docs", "twin: Ada Quill", *args).stdout)
    assert turn["prompt_tokens"] > docs_only["prompt_tokens"] + 30  # the persona
    # The persona is the user's to rewrite; --system still wins for one chat.
    assert cli(home, "twin", "persona", "Ada Quill", "--set", "-",
               stdin="You are Ada. Answer in one word.").returncode == 0  # fmt: skip
    assert cli(home, "twin", "persona", "Ada Quill").stdout.strip() == (
        "You are Ada. Answer in one word."
    )
    shorter = json.loads(cli(home, "chat", "--twin", "Ada Quill", *args).stdout)
    assert shorter["prompt_tokens"] < turn["prompt_tokens"]
    again = cli(home, "twin", "create", "Ada Quill", "--from", str(author))
    assert again.returncode == 1 and "already a twin" in again.stderr
    missing = cli(home, "chat", "--twin", "Nobody", "--prompt", "hi")
    assert missing.returncode == 1 and missing.stderr.startswith("error: no twin named")
    assert cli(home, "twin", "rm", "Ada Quill").returncode == 0
    assert json.loads(cli(home, "docs", "list", "--json").stdout) == []
    assert author.exists() and any(author.iterdir())


def test_a_twin_with_an_adapter_fine_tuned_on_its_texts(home: Path, author: Path) -> None:
    pytest.importorskip("torch", reason="fine-tuning needs the train extra")
    made = cli(home, "twin", "create", "Ada", "--from", str(author), "-m", "tiny", "--lora",
               "--steps", "2", "--json")  # fmt: skip
    assert made.returncode == 0, made.stderr[-2000:]
    adapter = Path(json.loads(made.stdout)["adapter"])
    assert adapter.exists() and adapter.parent == home / "adapters"
    args = ["--json", "--max-tokens", "4", "--temperature", "0", "--prompt", "hello"]
    turn = cli(home, "chat", "--twin", "Ada", *args)
    assert turn.returncode == 0, turn.stderr
    shown = json.loads(cli(home, "twin", "show", "Ada", "--json").stdout)
    assert shown["adapter"] == str(adapter)
