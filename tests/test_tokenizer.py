"""Tokenization is llama.cpp's, exactly: the conformance cases shipped with
llama.cpp's vocabularies, through our engine, and through test models built
with those vocabularies."""

from __future__ import annotations

from pathlib import Path

import pytest

from localchat.core.engine.client import Engine
from localchat.core.errors import EngineError
from localchat.testing.tiny_models import FIXTURE_VOCABS, fixture_vocab, write_llama_gguf


def conformance_cases(vocab: Path) -> list[tuple[str, list[int]]]:
    inputs = vocab.with_name(vocab.name + ".inp").read_text(encoding="utf-8")
    outputs = vocab.with_name(vocab.name + ".out").read_text(encoding="utf-8")
    texts = inputs.split("\n__ggml_vocab_test__\n")
    expected = [[int(t) for t in line.split()] for line in outputs.split("\n")]
    assert len(texts) == len(expected[: len(texts)])
    return list(zip(texts, expected, strict=False))


@pytest.mark.parametrize("name", FIXTURE_VOCABS)
def test_vocab_matches_llama_cpp_conformance_cases(name: str) -> None:
    cases = conformance_cases(fixture_vocab(name))
    assert len(cases) == 47
    with Engine() as engine:
        engine.load(fixture_vocab(name), vocab_only=True)
        for text, ids in cases:
            assert engine.tokenize(text, add_bos=False, special=False) == ids, repr(text)
        with pytest.raises(EngineError, match="tokenizer only"):
            engine.chat([{"role": "user", "content": "hi"}]).text()


@pytest.mark.parametrize("name", FIXTURE_VOCABS)
def test_a_test_model_tokenizes_like_its_family(name: str, tmp_path: Path) -> None:
    path = write_llama_gguf(tmp_path / f"{name}.gguf", vocab=name)
    with Engine() as engine:
        engine.load(path)
        for text, ids in conformance_cases(fixture_vocab(name)):
            assert engine.tokenize(text, add_bos=False, special=False) == ids, repr(text)
