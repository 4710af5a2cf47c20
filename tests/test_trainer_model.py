"""The trainer's model and its export: llama.cpp runs the exported GGUF and
gets the logits our PyTorch forward gets, token for token."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from localchat.core.engine.client import Engine  # noqa: E402
from localchat.core.engine.gguf_info import read_model_info  # noqa: E402
from localchat.core.params import GenerationSettings  # noqa: E402
from localchat.core.trainer.gguf_export import QTYPES, write_llama  # noqa: E402
from localchat.core.trainer.model import GPT, PRESETS, Config  # noqa: E402
from localchat.testing.tiny_models import byte_vocab  # noqa: E402


def sharp_model(cfg: Config, seed: int = 0) -> GPT:
    """Random weights large enough that the next-token distribution has clear
    winners (a fresh init's near-uniform logits would make top-1 a coin toss)."""
    torch.manual_seed(seed)
    model = GPT(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 2:
                p.normal_(0.0, (3.0 if "embed" in name else 1.0) / p.shape[1] ** 0.5)
            else:
                p.uniform_(0.5, 1.5)  # norm weights: not all ones, so their order matters
    return model.eval()


def llama_cpp_logits(path: Path, tokens: list[int]) -> np.ndarray:
    """llama.cpp's logits, in the engine's worker process (llama.cpp and
    PyTorch never share a process: their OpenMP runtimes do not mix)."""
    with Engine() as engine:
        engine.load(path, GenerationSettings())
        return np.asarray(engine.logits(tokens), dtype=np.float32)


@pytest.mark.parametrize("n_head_kv", [4, 2, 1])  # plain, grouped, multi-query attention
def test_llama_cpp_runs_the_export_as_our_forward_does(tmp_path: Path, n_head_kv: int) -> None:
    tok = byte_vocab()
    cfg = Config(
        vocab_size=len(tok["tokenizer.ggml.tokens"]),
        n_ctx=128,
        n_embd=64,
        n_layer=3,
        n_head=4,
        n_head_kv=n_head_kv,
        n_ff=160,
    )
    model = sharp_model(cfg)
    path = write_llama(tmp_path / "m.gguf", cfg.shape(), model.gguf_tensors(), tok, name="m")
    info = read_model_info(path)
    assert info.architecture == "llama" and info.context_length == 128
    rng = np.random.default_rng(1)
    tokens = [1, *rng.integers(5, cfg.vocab_size, 120).tolist()]
    with torch.no_grad():
        ours = model(torch.tensor([tokens]))[0].numpy()
    theirs = llama_cpp_logits(path, tokens)
    assert theirs.shape == ours.shape
    spread = float(ours.std())
    assert np.abs(ours - theirs).max() < 1e-3 * max(spread, 1.0) * 10
    top1 = (ours.argmax(-1) == theirs.argmax(-1)).mean()
    assert top1 >= 0.99


def test_q8_0_export_stays_close(tmp_path: Path) -> None:
    tok = byte_vocab()
    cfg = Config(vocab_size=len(tok["tokenizer.ggml.tokens"]), n_ctx=64, n_embd=64, n_layer=2)
    model = sharp_model(cfg, seed=3)
    f32 = write_llama(tmp_path / "f32.gguf", cfg.shape(), model.gguf_tensors(), tok, name="m")
    q8 = write_llama(
        tmp_path / "q8.gguf", cfg.shape(), model.gguf_tensors(), tok, name="m", qtype=QTYPES["q8_0"]
    )
    assert q8.stat().st_size < 0.4 * f32.stat().st_size
    assert read_model_info(q8).quantization == "Q8_0"
    tokens = [1, *np.random.default_rng(2).integers(5, cfg.vocab_size, 60).tolist()]
    with torch.no_grad():
        ours = model(torch.tensor([tokens]))[0].numpy()
    theirs = llama_cpp_logits(q8, tokens)
    assert (ours.argmax(-1) == theirs.argmax(-1)).mean() >= 0.9


def test_presets_and_shapes() -> None:
    for name, shape in PRESETS.items():
        cfg = Config(vocab_size=1000, **shape)
        assert cfg.head_dim % 2 == 0, name
    with pytest.raises(ValueError, match="divide"):
        Config(vocab_size=10, n_embd=64, n_head=6)
    model = GPT(Config(vocab_size=50, n_ctx=16, n_embd=32, n_layer=1, n_head=2, n_head_kv=1))
    with pytest.raises(ValueError, match="more than the context"):
        model(torch.zeros((1, 17), dtype=torch.long))
    loss = model.loss(torch.randint(0, 50, (2, 16)))
    assert abs(loss.item() - np.log(50)) < 0.5  # a fresh model guesses about uniformly
