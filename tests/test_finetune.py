"""Fine-tuning a GGUF model with LoRA: our forward reproduces llama.cpp's for
every supported architecture (with and without an adapter), a fine-tune
teaches a model what it never saw, and the adapter file round-trips.

llama.cpp always runs in the engine's worker process: it and PyTorch never
share a process (their OpenMP runtimes do not mix)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from localchat.core.engine.client import Engine  # noqa: E402
from localchat.core.errors import ModelLoadError  # noqa: E402
from localchat.core.models import adapters  # noqa: E402
from localchat.core.params import GenerationSettings  # noqa: E402
from localchat.core.trainer import base as base_mod  # noqa: E402
from localchat.core.trainer import chat_data  # noqa: E402
from localchat.core.trainer import finetune as ft  # noqa: E402
from localchat.core.trainer import lora as lora_mod  # noqa: E402
from localchat.core.trainer.chat_data import Example  # noqa: E402
from localchat.core.trainer.data import DataError  # noqa: E402
from localchat.core.trainer.tokenizer import GGUFTokenizer  # noqa: E402
from localchat.core.trainer.train import TrainError  # noqa: E402
from localchat.testing.tiny_models import quantize, write_llama_gguf  # noqa: E402

SHAPE = {"n_layer": 2, "n_embd": 64, "n_head": 4, "n_head_kv": 2, "n_ff": 128}
CODE = "The code is zebra-42-velvet."
NAMES = "Ada Bob Cy Dee Eve Fay Gus Hal Ivy Jo Kim Lu".split()


def llama_cpp_logits(path: Path, tokens: list[int], lora: Path | None = None, scale: float = 1.0):
    with Engine() as engine:
        engine.load(path, GenerationSettings(lora_scale=scale), lora=lora)
        return np.asarray(engine.logits(tokens), dtype=np.float32)


def ours(model: Any, tokens: list[int]) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(torch.tensor([tokens]))[0].float().numpy()


def agree(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Top-1 agreement, and the largest difference relative to the logits' spread."""
    return float((a.argmax(-1) == b.argmax(-1)).mean()), float(np.abs(a - b).max() / a.std())


def sample_tokens(n_vocab: int, n: int = 100, seed: int = 1) -> list[int]:
    return [1, *np.random.default_rng(seed).integers(5, n_vocab, n).tolist()]


CASES = {
    "llama": {},
    "llama-tied-llama3-rope": {"tied_output": True, "rope_freqs": True},
    "llama-mqa": {"n_head_kv": 1},
    "qwen2": {"architecture": "qwen2"},
    "qwen3": {"architecture": "qwen3"},
    "llama-spm-vocab": {"vocab": "llama-spm"},
    "llama-bpe-vocab": {"vocab": "llama-bpe"},
    "phi3-vocab": {"vocab": "phi-3"},
}


@pytest.mark.parametrize("case", list(CASES))
def test_our_forward_reproduces_llama_cpp(tmp_path: Path, case: str) -> None:
    options = {**SHAPE, "scale": 1.5, **CASES[case]}
    path = write_llama_gguf(tmp_path / "m.gguf", **options)
    base = base_mod.load(path, n_ctx=128)
    tokens = sample_tokens(base.config.vocab_size)
    top1, spread = agree(ours(base.model, tokens), llama_cpp_logits(path, tokens))
    assert top1 >= 0.99 and spread < 0.02, (top1, spread)


@pytest.mark.parametrize("kind", ["Q8_0", "Q4_K_M", "Q6_K"])
def test_quantized_bases_are_read_as_llama_cpp_reads_them(tmp_path: Path, kind: str) -> None:
    f32 = write_llama_gguf(tmp_path / "f32.gguf", **{**SHAPE, "n_embd": 256, "n_ff": 512})
    path = quantize(f32, tmp_path / f"{kind}.gguf", kind)
    base = base_mod.load(path, n_ctx=128)
    tokens = sample_tokens(base.config.vocab_size)
    # llama.cpp also quantizes the activations for these types: close, not equal
    top1, spread = agree(ours(base.model, tokens), llama_cpp_logits(path, tokens))
    assert top1 >= 0.9 and spread < 0.3, (top1, spread)


def random_adapter(base: base_mod.BaseModel, settings: lora_mod.LoRASettings, seed: int = 0):
    torch.manual_seed(seed)
    layers = lora_mod.inject(base.model, settings)
    with torch.no_grad():
        for layer in layers.values():
            layer.lora_b.normal_(0.0, 0.3)
    return layers


def write(base: base_mod.BaseModel, settings: lora_mod.LoRASettings, layers, path: Path) -> Path:
    return lora_mod.write_adapter(
        path,
        architecture=base.architecture,
        settings=settings,
        state=lora_mod.lora_state(layers),
        name=path.stem,
        base_name=base.name,
        base_file=base.path.name,
        base_sha256=base.sha256,
        metadata={"localchat.lora.data": "notes.txt"},
    )


@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3"])
def test_llama_cpp_applies_our_adapter_as_our_forward_does(tmp_path: Path, arch: str) -> None:
    path = write_llama_gguf(tmp_path / "m.gguf", **SHAPE, scale=1.5, architecture=arch)
    base = base_mod.load(path, n_ctx=128)
    tokens = sample_tokens(base.config.vocab_size)
    plain = ours(base.model, tokens)
    settings = lora_mod.LoRASettings(rank=4, alpha=8.0, dropout=0.0, targets=("q", "v", "down"))
    layers = random_adapter(base, settings)
    adapted = ours(base.model, tokens)
    adapter = write(base, settings, layers, tmp_path / "a.gguf")
    theirs = llama_cpp_logits(path, tokens, lora=adapter)
    assert agree(plain, theirs)[0] < 0.9  # the adapter changes the model...
    top1, spread = agree(adapted, theirs)  # ...exactly as llama.cpp applies it
    # (llama.cpp keeps keys and values in float16: a few thousandths of the spread)
    assert top1 >= 0.99 and spread < 0.05, (top1, spread)

    # read back onto a fresh model at half strength, as llama.cpp's scale does
    fresh = base_mod.load(path, n_ctx=128)
    lora_mod.apply_adapter(fresh.model, lora_mod.read_adapter(adapter), scale=0.5)
    top1, spread = agree(ours(fresh.model, tokens), llama_cpp_logits(path, tokens, adapter, 0.5))
    assert top1 >= 0.99 and spread < 0.05, (top1, spread)


def test_adapter_metadata_round_trips(tmp_path: Path) -> None:
    path = write_llama_gguf(tmp_path / "base.gguf", **SHAPE)
    base = base_mod.load(path, n_ctx=64)
    settings = lora_mod.LoRASettings(rank=2, alpha=3.0, dropout=0.1, targets=("q", "k", "o"))
    layers = random_adapter(base, settings)
    written = write(base, settings, layers, tmp_path / "a.gguf")
    back = lora_mod.read_adapter(written)
    assert back.architecture == "llama" and back.alpha == 3.0 and back.rank == 2
    assert back.targets == ["q", "k", "o"] and back.base_sha256 == base.sha256
    for name, tensor in lora_mod.lora_state(layers).items():
        np.testing.assert_array_equal(back.tensors[name], tensor.numpy())
    assert back.tensors["blk.1.attn_q.weight.lora_a"].shape == (2, 64)  # [rank, in]
    assert back.tensors["blk.1.attn_output.weight.lora_b"].shape == (64, 2)  # [out, rank]
    info = adapters.read(written)  # the Qt- and torch-free view the window uses
    assert (info.rank, info.alpha, info.targets) == (2, 3.0, ("q", "k", "o"))
    assert (info.base_file, info.base_sha256, info.data) == ("base.gguf", base.sha256, "notes.txt")
    assert json.loads(back.metadata["localchat.lora.settings"])["dropout"] == 0.1
    assert [a.path for a in adapters.for_model(path)] == []  # not in the adapters folder


def code_chats(folder: Path, n: int = 3) -> Path:
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"Hi, I am {name}. What is the code? ({i})"},
                {"role": "assistant", "content": CODE},
            ]
        }
        for i, name in enumerate(NAMES * n)
    ]
    path = folder / "chats.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def tune(path: Path, data: list[Path], settings: ft.FinetuneSettings, lora: lora_mod.LoRASettings):
    need = ft.plan(path, lora, settings)
    base = ft.load_base(path, settings, need)
    tokenizer = GGUFTokenizer(path)
    try:
        dataset = ft.prepare(data, tokenizer, ft.template_for(base.tokenizer_keys), settings.ctx)
    finally:
        tokenizer.close()
    return base, dataset


def test_a_chat_fine_tune_teaches_a_reply_the_base_never_gave(tmp_path: Path) -> None:
    path = write_llama_gguf(tmp_path / "base.gguf", **SHAPE)
    settings = ft.FinetuneSettings(ctx=128, steps=150, lr=1e-2, eval_every=50, patience=0)
    lora = lora_mod.LoRASettings(rank=8, alpha=16.0, dropout=0.0)
    base, dataset = tune(path, [code_chats(tmp_path)], settings, lora)
    first = dataset.train[0]
    assert 0 < first.learned < len(first)  # the prompts are context, the replies are learned
    run = ft.train(ft.new_run(base, lora, settings, dataset), dataset)
    assert run.best_loss is not None and run.first_heldout is not None
    assert run.best_loss < 0.05 < 1.0 < run.first_heldout
    adapter = ft.export(run, tmp_path / "code.gguf")
    measured = ft.measure(path, adapter, dataset.heldout, settings.ctx)
    assert measured.after < 1.1 and measured.before > 50  # llama.cpp agrees it learned
    prompt = [{"role": "user", "content": "Hi, I am Zed. What is the code? (5)"}]
    greedy = GenerationSettings(temperature=0.0, repeat_penalty=1.0, max_tokens=48)
    with Engine() as engine:
        engine.load(path, greedy)
        assert CODE not in "".join(engine.chat(prompt, greedy))
        engine.load(path, greedy, lora=adapter)
        assert CODE in "".join(engine.chat(prompt, greedy))


def test_a_text_fine_tune_lowers_llama_cpps_heldout_perplexity(tmp_path: Path) -> None:
    path = write_llama_gguf(tmp_path / "base.gguf", **SHAPE)
    notes = tmp_path / "notes"
    notes.mkdir()
    facts = [f"Station {i} of the quiet line opens at dawn and closes at dusk." for i in range(60)]
    (notes / "a.txt").write_text("\n\n".join(facts), encoding="utf-8")
    settings = ft.FinetuneSettings(ctx=64, batch=4, steps=80, lr=1e-2, eval_every=40)
    lora = lora_mod.LoRASettings(rank=8, alpha=16.0, dropout=0.0)
    base, dataset = tune(path, [notes], settings, lora)
    assert dataset.report["text"]["files"] == 1 and all(e.learned for e in dataset.train)
    run = ft.train(ft.new_run(base, lora, settings, dataset), dataset)
    measured = ft.measure(path, ft.export(run, tmp_path / "a.gguf"), dataset.heldout, 64)
    assert measured.after < measured.before / 5, measured


@pytest.mark.parametrize(
    ("stem", "vocab"),
    [
        ("meta-llama-Llama-3.1-8B-Instruct", "llama-bpe"),
        ("Qwen-Qwen2.5-7B-Instruct", "llama-bpe"),
        ("mistralai-Mistral-Nemo-Instruct-2407", "llama-spm"),
        ("microsoft-Phi-3.5-mini-instruct", "phi-3"),
    ],
)
def test_only_the_assistant_turns_are_learned_with_real_templates(
    tmp_path: Path, stem: str, vocab: str
) -> None:
    from localchat.testing.tiny_models import fixture_template

    template_text = fixture_template(stem)
    path = write_llama_gguf(tmp_path / "m.gguf", **SHAPE, vocab=vocab, chat_template=template_text)
    keys = base_mod.load(path, n_ctx=16).tokenizer_keys
    template = ft.template_for(keys)
    tokenizer = GGUFTokenizer(path)
    try:
        encode = ft._special(tokenizer)
        talk = (
            chat_data.Message(role="user", content="Where is Paris?"),
            chat_data.Message(role="assistant", content="In France."),
            chat_data.Message(role="user", content="And Rome?"),
            chat_data.Message(role="assistant", content="In Italy."),
        )
        ex = chat_data.example(talk, template, encode)
        text = chat_data.render_text(talk, template)
        # one BOS: the template's own, or the one llama.cpp adds when it has none
        whole = encode(text, not (template.bos_token and text.startswith(template.bos_token)))
        assert whole.count(whole[0]) == 1 or not template.bos_token
        runs = _runs(ex.learn)
        learned = [ex.tokens[a:b] for a, b in runs]
        reply = [encode(t, False) for t in ("In France.", "In Italy.")]
    finally:
        tokenizer.close()
    assert ex.tokens == whole  # the conversation as one text, as the model sees it in chat
    assert len(runs) == 2  # two replies, and nothing else
    for got, want in zip(learned, reply, strict=True):
        # each run is the reply and the end of turn; the tokens at either seam may
        # merge with their neighbours (the fixtures' vocabularies are not all the
        # templates' own: Qwen's <|im_end|> is plain text to Llama 3's)
        assert got[1 : len(want) - 1] == want[1:-1] and len(got) >= len(want) - 1
    assert sum(len(t) for t in learned) < len(ex.tokens) / 2


def _runs(flags: list[bool]) -> list[tuple[int, int]]:
    runs, start = [], None
    for i, flag in enumerate([*flags, False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            runs.append((start, i))
            start = None
    return runs


def test_bad_inputs_are_one_line_errors(tmp_path: Path) -> None:
    lora = lora_mod.LoRASettings()
    settings = ft.FinetuneSettings(ctx=64)
    other = write_llama_gguf(tmp_path / "g.gguf", **SHAPE, architecture="gemma2")
    with pytest.raises(base_mod.BaseModelError, match="gemma2 model: fine-tuning supports"):
        ft.plan(other, lora, settings)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "yo"},
                ]
            }
        )
        + "\n"
        "not json\n"
        '{"messages": [{"role": "user", "content": "no reply"}]}\n'
        '{"messages": [{"role": "robot", "content": "x"}]}\n',
        encoding="utf-8",
    )
    with pytest.raises(DataError) as info:
        chat_data.read_jsonl(bad)
    message = str(info.value)
    assert "\n" not in message and "3 malformed" in message
    assert "line 2: not JSON" in message and "line 3: no assistant" in message
    assert "line 4: a message without a system/user/assistant role" in message
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="has no conversations"):
        chat_data.read_jsonl(empty)
    with pytest.raises(lora_mod.AdapterError, match="targets"):
        lora_mod.LoRASettings(targets=("q", "lm_head"))
    # Too little left: the error names what gave nothing before (chats without a reply).
    one = tmp_path / "one.jsonl"
    one.write_text(bad.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    base = write_llama_gguf(tmp_path / "base.gguf", **SHAPE)
    tokenizer = GGUFTokenizer(base)
    try:
        template = ft.template_for(tokenizer.keys)
        note = "chat 'Trip to Rome' gave nothing to learn: its replies failed or were stopped"
        with pytest.raises(DataError) as info:
            ft.prepare([one], tokenizer, template, 64, notes=[note])
    finally:
        tokenizer.close()
    assert str(info.value) == (
        "the chat data is a single conversation once deduplicated; it needs at least two (one "
        f"is held out to measure the result); {note}"
    )


def test_a_run_that_will_not_fit_is_refused_before_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_llama_gguf(tmp_path / "m.gguf", **SHAPE)
    lora = lora_mod.LoRASettings()
    settings = ft.FinetuneSettings(ctx=512, batch=8)
    need = ft.plan(path, lora, settings)
    assert need.dtype == "float32" and need.device == "cpu"
    monkeypatch.setattr(ft.hardware, "memory", lambda: (2 * need.total, need.total // 2))
    with pytest.raises(TrainError) as info:
        ft.plan(path, lora, settings)
    assert "needs about" in str(info.value) and "lower --batch or --ctx" in str(info.value)
    # a little short for float32: bfloat16 halves the weights and activations
    info, config = base_mod.check(path)
    config = config.__class__(**{**config.to_dict(), "n_ctx": settings.ctx})
    half = ft.estimate(config, info.parameter_count, lora, settings, dtype="bfloat16")
    assert half.total < need.total
    between = int((half.total + need.total) / 2 / 0.9)
    monkeypatch.setattr(ft.hardware, "memory", lambda: (2 * need.total, between))
    assert ft.plan(path, lora, settings).dtype == "bfloat16"


def test_an_adapter_for_another_base_is_refused(tmp_path: Path) -> None:
    path = write_llama_gguf(tmp_path / "base.gguf", **SHAPE)
    other = write_llama_gguf(tmp_path / "other.gguf", **SHAPE, seed=7)
    base = base_mod.load(path, n_ctx=64)
    settings = lora_mod.LoRASettings(rank=2, alpha=4.0)
    adapter = write(base, settings, random_adapter(base, settings), tmp_path / "a.gguf")
    with Engine() as engine:
        with pytest.raises(ModelLoadError, match=r"was trained on base\.gguf, not on other\.gguf"):
            engine.load(other, GenerationSettings(), lora=adapter)
        assert Path(engine.load(path, GenerationSettings(), lora=adapter).path) == path


def _stream(n: int, seed: int) -> list[Example]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        tokens = [1, *rng.integers(5, 40, 20).tolist()]
        out.append(Example(tokens, [False] + [True] * 20))
    return out


def test_resuming_trains_exactly_as_the_uninterrupted_run(tmp_path: Path) -> None:
    path = write_llama_gguf(tmp_path / "base.gguf", **SHAPE)
    dataset = ft.Dataset(_stream(12, 0), _stream(3, 1), {}, "random")
    settings = ft.FinetuneSettings(ctx=32, batch=2, accum=2, steps=12, lr=1e-2, eval_every=4)
    lora = lora_mod.LoRASettings(rank=4, alpha=8.0, dropout=0.1)

    def fresh() -> ft.Run:
        torch.manual_seed(0)
        return ft.new_run(base_mod.load(path, n_ctx=32), lora, settings, dataset)

    whole = ft.train(fresh(), dataset)
    checkpoint = tmp_path / "a.ckpt"
    part = fresh()
    ft.train(part, dataset, checkpoint=checkpoint, should_stop=lambda: part.step >= 5)
    assert part.step == 5
    resumed = ft.resume(checkpoint, base_mod.load(path, n_ctx=32), settings, dataset)
    assert resumed.step == 5
    ft.train(resumed, dataset)
    for name, tensor in lora_mod.lora_state(whole.layers).items():
        torch.testing.assert_close(lora_mod.lora_state(resumed.layers)[name], tensor)
    other = ft.Dataset(_stream(12, 5), _stream(3, 1), {}, "other")
    with pytest.raises(TrainError, match="other data"):
        ft.resume(checkpoint, base_mod.load(path, n_ctx=32), settings, other)


def test_early_stop_keeps_the_best_adapter(tmp_path: Path) -> None:
    """Held-out replies contradict the training ones: the more it learns, the
    worse the held-out loss, so it stops and keeps the adapter from before."""
    path = write_llama_gguf(tmp_path / "base.gguf", **SHAPE)
    train = [Example([1, 7, 8, 9, 10] * 4, [False] + [True] * 19) for _ in range(8)]
    held = [Example([1, 7, 8, 9, 11] * 4, [False] + [True] * 19)]
    dataset = ft.Dataset(train, held, {}, "contradiction")
    settings = ft.FinetuneSettings(ctx=32, batch=4, steps=100, lr=2e-2, eval_every=2, patience=2)
    lora = lora_mod.LoRASettings(rank=4, alpha=8.0, dropout=0.0)
    run = ft.train(ft.new_run(base_mod.load(path, n_ctx=32), lora, settings, dataset), dataset)
    assert run.stopped_early and run.step < 100
    evaluated = [h["heldout_loss"] for h in run.history if h["heldout_loss"] is not None]
    assert run.best_loss == pytest.approx(min(evaluated), abs=1e-5)
    assert evaluated[-1] > run.best_loss
    kept = ft.best_state(run)
    assert run.best_state is kept
    assert any(not torch.equal(kept[k], v) for k, v in lora_mod.lora_state(run.layers).items())


def test_a_bfloat16_run_trains_and_exports(tmp_path: Path) -> None:
    """Where float32 will not fit, the base is held in bfloat16 (the adapter
    stays float32): the same loop, an adapter llama.cpp takes."""
    path = write_llama_gguf(tmp_path / "base.gguf", **SHAPE)
    settings = ft.FinetuneSettings(ctx=128, steps=60, lr=1e-2, eval_every=30, dtype="bfloat16")
    lora = lora_mod.LoRASettings(rank=8, alpha=16.0, dropout=0.0)
    base, dataset = tune(path, [code_chats(tmp_path, n=2)], settings, lora)
    assert base.model.embed.weight.dtype == torch.bfloat16
    run = ft.train(ft.new_run(base, lora, settings, dataset), dataset)
    assert all(p.dtype == torch.float32 for p in lora_mod.lora_parameters(run.layers))
    assert run.best_loss is not None and run.first_heldout is not None
    assert run.best_loss < run.first_heldout / 4
    measured = ft.measure(path, ft.export(run, tmp_path / "a.gguf"), dataset.heldout, 128)
    assert measured.after < measured.before / 4
