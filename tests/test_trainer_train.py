"""Training from scratch: the loss falls, a resumed run follows the same
curve, the export chats in llama.cpp with the perplexity our model measures."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tokenizers")

from localchat.core.engine.client import Engine  # noqa: E402
from localchat.core.params import GenerationSettings  # noqa: E402
from localchat.core.trainer import train as tr  # noqa: E402
from localchat.core.trainer.data import prepare  # noqa: E402
from localchat.core.trainer.tokenizer import train_bpe  # noqa: E402
from localchat.testing.texts import grammar_text  # noqa: E402

TINY = tr.TrainSettings(steps=60, batch=8, lr=3e-3, warmup=5, eval_every=30, checkpoint_every=1000)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    return prepare([grammar_text(tmp_path_factory.mktemp("text") / "grammar.txt")])


@pytest.fixture(scope="module")
def tokenizer(corpus):
    return train_bpe(corpus.train, 300)


def tokens(corpus, tokenizer) -> tuple[np.ndarray, np.ndarray]:
    return tr.prepare_tokens(corpus, tokenizer)


def test_training_lowers_the_held_out_loss(corpus, tokenizer) -> None:
    train_ids, held_ids = tokens(corpus, tokenizer)
    run = tr.new_run(tr.preset("tiny", tokenizer.vocab_size), TINY, tokenizer)
    before = tr.heldout_loss(run.model, held_ids)
    seen: list[tr.Progress] = []
    tr.train(run, train_ids, held_ids, on_progress=seen.append)
    assert [p.step for p in seen] == list(range(1, 61))
    after = seen[-1].heldout_loss
    assert after is not None and after < 0.5 * before  # ln(300) ≈ 5.7 at the start
    assert seen[29].heldout_loss is not None and seen[30].heldout_loss is None
    assert all(p.lr > 0 and p.tokens_per_s > 0 for p in seen)
    assert seen[4].lr == pytest.approx(TINY.lr)  # warmed up
    assert seen[-1].lr == pytest.approx(TINY.lr / 10, rel=0.05)  # decayed


def test_a_resumed_run_follows_the_same_curve(corpus, tokenizer, tmp_path: Path) -> None:
    train_ids, held_ids = tokens(corpus, tokenizer)
    config = tr.preset("tiny", tokenizer.vocab_size)
    settings = replace(TINY, steps=16)
    straight = tr.train(tr.new_run(config, settings, tokenizer), train_ids, held_ids)

    ckpt = tmp_path / "run.ckpt"
    half = tr.new_run(config, settings, tokenizer)
    tr.train(half, train_ids, held_ids, checkpoint=ckpt, should_stop=lambda: half.step >= 8)
    resumed = tr.load(ckpt, settings=settings)
    assert resumed.step == 8 and resumed.tokenizer.json_text == tokenizer.json_text
    tr.train(resumed, train_ids, held_ids)
    ours = [h["loss"] for h in resumed.history]
    reference = [h["loss"] for h in straight.history]
    assert len(ours) == 16
    np.testing.assert_allclose(ours, reference, rtol=1e-4)


def test_the_export_chats_in_llama_cpp_with_the_same_perplexity(
    corpus, tokenizer, tmp_path: Path
) -> None:
    train_ids, held_ids = tokens(corpus, tokenizer)
    run = tr.new_run(tr.preset("tiny", tokenizer.vocab_size), TINY, tokenizer)
    tr.train(run, train_ids, held_ids)
    path = tr.export(run, tmp_path / "grammar.gguf", name="grammar", license="mit")
    ours = tr.heldout_loss(run.model, held_ids)

    n_ctx = run.config.n_ctx
    with torch.no_grad():  # our model's own first choices, window by window
        windows = (len(held_ids) - 1) // n_ctx
        rows = np.stack([held_ids[w * n_ctx : w * n_ctx + n_ctx + 1] for w in range(windows)])
        logits = run.model(torch.from_numpy(rows[:, :-1]))
        our_top1 = float((logits.argmax(-1) == torch.from_numpy(rows[:, 1:])).float().mean())

    with Engine() as engine:  # llama.cpp, in the app's worker process
        engine.load(path, GenerationSettings())
        report = engine.perplexity(tokens=held_ids.tolist(), window=n_ctx)
        assert report.windows == windows and report.tokens == windows * n_ctx
        assert abs(report.perplexity - np.exp(ours)) / np.exp(ours) < 0.01  # within 1%
        assert abs(report.top1 - our_top1) < 0.01
        # And the app chats with it, in its chat template (after the scoring).
        stream = engine.chat(
            [{"role": "user", "content": "The small cat"}],
            GenerationSettings(max_tokens=12, temperature=0.0),
        )
        reply = stream.text()
    assert stream.result is not None and stream.result.completion_tokens > 0
    assert reply.strip()


def test_too_little_text_is_a_one_line_error(tmp_path: Path) -> None:
    small = tmp_path / "small.txt"
    small.write_text("A few words.\n\nAnd a few more.")
    with pytest.raises(tr.TrainError, match="less than one context") as err:
        tr.scratch([small], preset_name="tiny", vocab_size=300, settings=TINY)
    assert "\n" not in str(err.value)
    with pytest.raises(tr.TrainError, match="no preset"):
        tr.preset("huge", 300)
    with pytest.raises(tr.TrainError, match="not a LocalChat checkpoint"):
        bad = tmp_path / "bad.ckpt"
        bad.write_bytes(b"not a checkpoint")
        tr.load(bad)


def test_llama_cpp_tokenizes_as_our_tokenizer_does(corpus, tokenizer, tmp_path: Path) -> None:
    """The exported vocabulary and merges, with GPT-2's pre-tokenizer, split
    any text into the ids the model was trained on."""
    run = tr.new_run(tr.preset("tiny", tokenizer.vocab_size), TINY, tokenizer)
    path = tr.export(run, tmp_path / "t.gguf", name="t")
    samples = [
        "The quick brown fox sees the lazy dog.",
        "  leading spaces\n\ttabs\n\nand\r\nCRLF   ",
        "Unicode: café, naïve, 東京, emoji 🙂; numbers 12345 3.14159",
        "def f(x):\n    return x**2 + 1_000  # it's, we'll, they've",
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    ]
    with Engine() as engine:
        engine.load(path, vocab_only=True)
        for text in samples:
            ours = tokenizer.encode(text)
            assert engine.tokenize(text, add_bos=False, special=True) == ours, text
            assert tokenizer.decode(ours) == text


def test_a_gguf_models_tokenizer_can_be_reused(corpus, tmp_path: Path) -> None:
    """Trained on a real model's vocabulary (Llama 2's SentencePiece): the ids
    are llama.cpp's own, and the export speaks that vocabulary."""
    from localchat.core.trainer.tokenizer import GGUFTokenizer, from_json
    from localchat.testing.tiny_models import fixture_vocab

    source = fixture_vocab("llama-spm")
    tok = GGUFTokenizer(source)
    assert tok.vocab_size == 32000
    ids = tok.encode("The small cat sees the old fox.")
    with Engine() as engine:
        engine.load(source, vocab_only=True)
        assert ids == engine.tokenize("The small cat sees the old fox.", special=False)
    again = from_json(tok.json_text)  # what a checkpoint keeps
    assert isinstance(again, GGUFTokenizer) and again.encode("The small cat") == ids[:3]
    train_ids, held_ids = tr.prepare_tokens(corpus, tok)
    tok.close()
    again.close()
    cfg = tr.preset("tiny", tok.vocab_size)
    run = tr.new_run(cfg, replace(TINY, steps=10, eval_every=10), tok)
    tr.train(run, train_ids, held_ids)
    path = tr.export(run, tmp_path / "spm.gguf", name="spm")
    ours = tr.heldout_loss(run.model, held_ids, 4)
    with Engine() as engine:
        loaded = engine.load(path, GenerationSettings())
        assert loaded.n_vocab == 32000
        assert engine.tokenize("The small cat sees the old fox.", special=False) == ids
        report = engine.perplexity(tokens=held_ids.tolist(), window=cfg.n_ctx, max_windows=4)
    assert abs(report.nll - ours) < 0.01 * ours
