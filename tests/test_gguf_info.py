"""Model info from the GGUF header: same answers as the gguf package, fast, and
a one-line reason for every kind of bad file."""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest

from localchat.core.engine.client import Engine
from localchat.core.engine.gguf_info import ArrayInfo, read_model_info
from localchat.core.errors import ModelFileError
from localchat.core.params import GenerationSettings
from localchat.testing.tiny_models import fixture_vocab, write_llama_gguf


@pytest.mark.parametrize("which", ["tiny", "phi-3-vocab", "spm-vocab"])
def test_header_matches_gguf_reader(which: str, tiny_model: Path) -> None:
    path = {
        "tiny": tiny_model,
        "phi-3-vocab": fixture_vocab("phi-3"),
        "spm-vocab": fixture_vocab("llama-spm"),
    }[which]
    ours = read_model_info(path)
    ref = gguf.GGUFReader(path)
    keys = [k for k in ref.fields if not k.startswith("GGUF.")]
    assert list(ours.metadata) == keys
    for key in keys:
        expected = ref.fields[key].contents()
        got = ours.metadata[key]
        if isinstance(got, ArrayInfo):
            assert got.count == len(expected)
        elif isinstance(got, float):
            assert got == pytest.approx(expected)
        else:
            assert got == expected, key
    assert [(t.name, t.type, t.n_elements, t.n_bytes) for t in ours.tensors] == [
        (t.name, t.tensor_type, int(t.n_elements), int(t.n_bytes)) for t in ref.tensors
    ]
    # Offsets are relative to the data section, as in the file.
    assert [t.offset for t in ours.tensors] == [
        int(t.data_offset) - int(ref.data_offset) for t in ref.tensors
    ]


def test_model_facts(tmp_path: Path) -> None:
    path = write_llama_gguf(
        tmp_path / "m.gguf",
        n_embd=128,
        n_layer=3,
        n_head=4,
        n_head_kv=2,
        n_ff=256,
        context_length=2048,
        qtype=gguf.GGMLQuantizationType.Q8_0,
        name="Facts",
    )
    info = read_model_info(path)
    assert info.architecture == "llama"
    assert info.name == "Facts"
    assert info.file_kind == "model"
    assert info.quantization == "Q8_0"
    assert info.context_length == 2048
    assert (info.n_layer, info.n_embd, info.n_head, info.n_head_kv) == (3, 128, 4, 2)
    assert info.has_chat_template
    assert info.file_size == path.stat().st_size
    n_vocab = info.n_vocab
    per_layer = 2 * 128 + 128 * 128 * 2 + 2 * (64 * 128) + 3 * 256 * 128
    assert info.parameter_count == 2 * n_vocab * 128 + 128 + 3 * per_layer
    # KV cache: layers x ctx x kv heads x (key + value dims) x 2 bytes (f16).
    assert info.kv_cache_bytes(1024) == 3 * 1024 * 2 * (32 + 32) * 2
    assert info.ram_estimate(4096) > info.ram_estimate(2048) > info.weights_bytes


def test_the_whole_llama3_vocabulary_is_read_quickly() -> None:
    info = read_model_info(fixture_vocab("llama-bpe"))
    assert info.n_vocab == 128256
    assert isinstance(info.metadata["tokenizer.ggml.merges"], ArrayInfo)


def _bad(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_bad_files_get_one_line_reasons(tmp_path: Path, tiny_model: Path) -> None:
    whole = tiny_model.read_bytes()
    info = read_model_info(tiny_model)
    cases = {
        tmp_path / "missing.gguf": "no such file",
        tmp_path: "is a folder",
        _bad(tmp_path, "empty.gguf", b""): "is empty (0 bytes)",
        _bad(tmp_path, "text.gguf", b"hello, I am not a model\n" * 10): "not a GGUF model file",
        _bad(tmp_path, "ckpt.gguf", b"PK\x03\x04" + b"\0" * 100): "zip archive",
        _bad(tmp_path, "header.gguf", whole[:200]): "header ends early",
        _bad(tmp_path, "data.gguf", whole[: len(whole) - 1000]): "tensors need",
        _bad(tmp_path, "v9.gguf", b"GGUF" + (9).to_bytes(4, "little") + whole[8:]): "version 9",
    }
    for path, reason in cases.items():
        with pytest.raises(ModelFileError) as err:
            read_model_info(path)
        assert reason in str(err.value), path
        assert "\n" not in str(err.value)
    assert info.weights_bytes < len(whole)


@pytest.mark.parametrize("n_ctx", [1024, 4096])
def test_memory_estimate_matches_what_llama_cpp_allocates(slow_model: Path, n_ctx: int) -> None:
    info = read_model_info(slow_model)
    with Engine() as engine:
        loaded = engine.load(slow_model, GenerationSettings(ctx=n_ctx))
    assert loaded.kv_cache_bytes > 0 and loaded.compute_bytes > 0
    assert info.kv_cache_bytes(n_ctx) == pytest.approx(loaded.kv_cache_bytes, rel=0.01)
    assert 0.8 < info.compute_bytes(n_ctx) / loaded.compute_bytes < 1.25
