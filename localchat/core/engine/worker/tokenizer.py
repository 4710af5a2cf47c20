"""The loaded model's tokenizer, llama.cpp's vocabulary behind the small
interface the prompt cache and the generation loop use (see
:class:`~localchat.core.engine.worker.prompt_cache.Tokenizer`)."""

from __future__ import annotations

import ctypes

import llama_cpp


class LlamaTokenizer:
    """Tokens and their text, for one ``llama_cpp.Llama`` (loaded in full or
    for its vocabulary only)."""

    def __init__(self, llm: llama_cpp.Llama) -> None:
        self.llm = llm
        self.vocab = llm._model.vocab
        meta = llm.metadata
        self.add_space_prefix = (
            meta.get("tokenizer.ggml.model") == "llama"
            and meta.get("tokenizer.ggml.add_space_prefix", "true") == "true"
        )
        """SentencePiece's leading space: the first token of a reply is
        written without it."""

    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        return self.llm.tokenize(text.encode(), add_bos=add_bos, special=special)

    def piece(self, token: int, *, special: bool = False, lstrip: int = 0) -> bytes:
        """The bytes of ``token`` (``special``: a control token's text too;
        ``lstrip``: without that many leading spaces)."""
        size = 64
        while True:
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, size, lstrip, special)
            if n >= 0:
                return buf.raw[:n]
            size = -n

    def is_control(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_control(self.vocab, token))

    def is_end_of_generation(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))

    def n_vocab(self) -> int:
        return self.llm.n_vocab()

    def adds_bos(self) -> bool:
        """Whether the model wants a BOS token in front of a prompt."""
        return bool(self.llm._model.add_bos_token())
