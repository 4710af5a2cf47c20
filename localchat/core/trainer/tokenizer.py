"""The trainer's tokenizer: a byte-level BPE trained on the user's text, or
the tokenizer of an existing GGUF model (:class:`GGUFTokenizer`).

Trained with Hugging Face's ``tokenizers`` (the ``train`` extra) in exactly
the form llama.cpp knows as ``gpt2``: GPT-2's pre-tokenizer pattern (words,
numbers, punctuation and spaces split apart first), bytes mapped to printable
characters, merges learned from the text. Any text is covered (every byte is
in the vocabulary), and the GGUF export writes the vocabulary and merges as
``tokenizer.ggml.*`` keys with the pre-tokenizer named ``gpt-2``, so llama.cpp
splits text into the same tokens (a test checks it).

The chat tokens (ChatML's ``<|im_start|>`` and ``<|im_end|>``) and
``<|endoftext|>`` (between documents) are control tokens: never produced by
merging text, each one id.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localchat.core.engine.template import FALLBACK_TEMPLATE as CHATML
from localchat.core.errors import LocalChatError

END_OF_TEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIALS = (END_OF_TEXT, IM_START, IM_END)
MIN_VOCAB = 256 + len(SPECIALS)


class TokenizerError(LocalChatError):
    """A tokenizer that cannot be trained or used."""


@dataclass
class Tokenizer:
    """A trained byte-level BPE, serialisable (``to_json``) into checkpoints."""

    json_text: str

    def __post_init__(self) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        self._tok = HFTokenizer.from_str(self.json_text)

    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    def token_id(self, token: str) -> int:
        found = self._tok.token_to_id(token)
        if found is None:
            raise TokenizerError(f"the tokenizer has no {token}")
        return int(found)

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [list(e.ids) for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        return str(self._tok.decode(list(ids), skip_special_tokens=False))

    def gguf_keys(self) -> dict[str, Any]:
        """The ``tokenizer.*`` keys of a GGUF that llama.cpp tokenizes like this."""
        model = json.loads(self.json_text)["model"]
        vocab: dict[str, int] = model["vocab"]
        for token in SPECIALS:
            vocab.setdefault(token, self.token_id(token))
        tokens = [""] * len(vocab)
        for token, index in vocab.items():
            tokens[index] = token
        merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
        types = [3 if t in SPECIALS else 1 for t in tokens]  # control / normal
        return {
            "tokenizer.ggml.model": "gpt2",
            "tokenizer.ggml.pre": "gpt-2",
            "tokenizer.ggml.tokens": tokens,
            "tokenizer.ggml.token_type": types,
            "tokenizer.ggml.merges": merges,
            "tokenizer.ggml.bos_token_id": self.token_id(END_OF_TEXT),
            "tokenizer.ggml.eos_token_id": self.token_id(IM_END),
            "tokenizer.ggml.padding_token_id": self.token_id(END_OF_TEXT),
            "tokenizer.ggml.add_bos_token": False,
            "tokenizer.ggml.add_eos_token": False,
            "tokenizer.chat_template": CHATML,
        }


def train_bpe(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Learn a byte-level BPE of ``vocab_size`` tokens (specials included)."""
    if vocab_size < MIN_VOCAB:
        raise TokenizerError(f"a byte-level vocabulary needs at least {MIN_VOCAB} tokens")
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return Tokenizer(tok.to_str())


class GGUFTokenizer:
    """The tokenizer of an existing GGUF model, reused: the model trained here
    then speaks that model's vocabulary (and can share its chat template).

    Text is tokenized by llama.cpp itself (the engine's worker, loading only
    the vocabulary), so the ids are exactly those that model's users get; the
    export copies the source's ``tokenizer.*`` keys. A checkpoint keeps the
    keys and the source's path; going on needs the source file again."""

    def __init__(self, source: str | Path, keys: dict[str, Any] | None = None) -> None:
        from localchat.core.engine.gguf_info import read_model_info

        self.source = str(Path(source).expanduser().resolve())
        if keys is None:
            info = read_model_info(self.source, full_arrays=("tokenizer.",))
            keys = {k: v for k, v in info.metadata.items() if k.startswith("tokenizer.")}
            if "tokenizer.ggml.tokens" not in keys:
                raise TokenizerError(f"{Path(self.source).name} has no tokenizer to reuse")
            keys.setdefault("tokenizer.chat_template", CHATML)
        self.keys = keys
        self._engine: Any = None

    @property
    def json_text(self) -> str:
        return json.dumps({"localchat_tokenizer": "gguf", "source": self.source, "keys": self.keys})

    @property
    def vocab_size(self) -> int:
        return len(self.keys["tokenizer.ggml.tokens"])

    def _vocab(self) -> Any:
        if self._engine is None:
            from localchat.core.engine.client import Engine

            if not Path(self.source).is_file():
                raise TokenizerError(
                    f"the tokenizer's source {self.source} is gone; it is needed to tokenize"
                )
            engine = Engine()
            engine.load(self.source, vocab_only=True)
            self._engine = engine
        return self._engine

    def encode(self, text: str, *, special: bool = False, add_bos: bool = False) -> list[int]:
        """Token ids of ``text``; ``special`` parses control tokens written in it
        (a chat template's), ``add_bos`` adds BOS where the model wants one."""
        return list(self._vocab().tokenize(text, add_bos=add_bos, special=special))

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Sequence[int]) -> str:
        raise TokenizerError("decoding a reused GGUF tokenizer is llama.cpp's job (chat with it)")

    def gguf_keys(self) -> dict[str, Any]:
        return dict(self.keys)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None


AnyTokenizer = Tokenizer | GGUFTokenizer


def from_json(text: str) -> AnyTokenizer:
    """A tokenizer from what a checkpoint keeps (``json_text``)."""
    data = json.loads(text)
    if isinstance(data, dict) and data.get("localchat_tokenizer") == "gguf":
        return GGUFTokenizer(data["source"], data["keys"])
    return Tokenizer(text)
