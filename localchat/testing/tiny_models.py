"""Write small random-weight llama-architecture GGUF models.

Tests and benchmarks cannot download weights, so they make their own: a model
of any llama shape with random weights, written with the ``gguf`` package. Its
tokenizer is either a small byte-level SentencePiece vocabulary made here
(``vocab="bytes"``) or copied from one of the real vocab-only GGUFs in the
shared fixtures (``"llama-spm"``, ``"llama-bpe"``, ``"phi-3"``), so the model
tokenizes exactly like that family.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from localchat.core.engine.gguf_info import read_model_info
from localchat.core.engine.template import FALLBACK_TEMPLATE as CHATML
from localchat.core.trainer.gguf_export import LlamaShape, add_kv, write_llama

FIXTURE_VOCABS = ("llama-spm", "llama-bpe", "phi-3")
_WORDS = (
    "the of and to in is you that it he was for on are as with his they at be this have "
    "from or one had by word but not what all were we when your can said there use an "
    "each which she do how their if will up other about out many then them these so some "
    "her would make like him into time has look two more write go see number no way "
    "could people my than first water been call who oil its now find long down day did "
    "get come made may part hello world model chat token python"
).split()

TensorHook = Callable[[str, np.ndarray], np.ndarray]


def fixtures_dir() -> Path:
    """The shared test fixtures: ``LOCALCHAT_FIXTURES`` or ``../shared/fixtures``."""
    env = os.environ.get("LOCALCHAT_FIXTURES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"


def fixture_vocab(name: str) -> Path:
    path = fixtures_dir() / "vocab" / f"ggml-vocab-{name}.gguf"
    if not path.exists():
        raise FileNotFoundError(
            f"tokenizer fixture {path} is missing; set LOCALCHAT_FIXTURES to the shared "
            "fixtures folder"
        )
    return path


def fixture_template(stem: str) -> str:
    return (fixtures_dir() / "templates" / f"{stem}.jinja").read_text(encoding="utf-8")


def byte_vocab() -> dict[str, Any]:
    """A small byte-level SentencePiece vocabulary (every byte, ASCII, some words)
    with a ChatML template, as GGUF `tokenizer.*` keys."""
    tokens = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    types = [2, 3, 3, 3, 3]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [6] * 256
    singles = [chr(c) for c in range(33, 127)] + ["▁"]
    tokens += singles
    types += [1] * len(singles)
    words = ["▁" + w for w in _WORDS]
    tokens += words
    types += [1] * len(words)
    scores = [0.0] * 261 + [-float(i) for i in range(len(singles))]
    scores += [-100.0 + len(w) for w in words]
    return {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.scores": scores,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2,
        "tokenizer.ggml.unknown_token_id": 0,
        "tokenizer.ggml.add_bos_token": True,
        "tokenizer.ggml.add_eos_token": False,
        "tokenizer.chat_template": CHATML,
    }


def _fixture_tokenizer(name: str) -> dict[str, Any]:
    info = read_model_info(fixture_vocab(name), full_arrays=("tokenizer.",))
    return {k: v for k, v in info.metadata.items() if k.startswith("tokenizer.")}


def write_llama_gguf(
    path: str | os.PathLike[str],
    *,
    vocab: str = "bytes",
    n_embd: int = 64,
    n_layer: int = 2,
    n_head: int = 4,
    n_head_kv: int = 2,
    n_ff: int = 128,
    context_length: int = 4096,
    chat_template: str | None = "default",
    qtype: gguf.GGMLQuantizationType = gguf.GGMLQuantizationType.F32,
    seed: int = 0,
    scale: float = 0.5,
    name: str = "tiny-test-llama",
    architecture: str = "llama",
    logit_scale: float = 4.0,
    suppress_special: bool = False,
    ascii_only: bool = False,
    tensor_hook: TensorHook | None = None,
    store_as: dict[str, type] | None = None,
    tied_output: bool = False,
    rope_freqs: bool = False,
    added_tokens: Sequence[tuple[str, int]] = (),
    eos_token: str | None = None,
) -> Path:
    """Write a random-weight model and return its path.

    ``chat_template="default"`` keeps the vocabulary's own template (ChatML for
    the byte vocabulary), ``None`` writes none, any other string is used as is.
    ``logit_scale`` sharpens the output layer: large values make greedy
    decoding robust to the float noise of different batch splits.
    ``suppress_special`` keeps control tokens (EOS among them) from being
    generated, for tests that need long replies. ``ascii_only`` keeps the
    byte tokens other than newline from being generated, so the reply is
    printable ASCII (random words and characters, markup among them) rather
    than random bytes, whose UTF-8 falls in a dozen scripts or none.
    ``tensor_hook(name, array)`` may change a tensor before it is written.
    ``store_as`` stores named tensors in another numpy dtype (e.g. float64,
    which llama.cpp loads but cannot compute with: a way to crash it).
    ``architecture`` "qwen2" adds query/key/value biases, "qwen3" query/key
    norms (llama.cpp runs both with NEOX RoPE); any other name only renames the
    metadata (to test unsupported ones). ``tied_output`` leaves out the output
    matrix (the embeddings are reused); ``rope_freqs`` adds Llama 3.1's
    per-pair RoPE frequency factors. ``added_tokens`` adds (text, token type)
    pairs to the vocabulary (3: control, 4: user-defined), e.g. a family's
    thinking markers; ``eos_token`` names the end-of-generation token by its
    text (one of them)."""
    path = Path(path)
    rng = np.random.default_rng(seed)
    tok = byte_vocab() if vocab == "bytes" else _fixture_tokenizer(vocab)
    if added_tokens:
        tok["tokenizer.ggml.tokens"] = [
            *tok["tokenizer.ggml.tokens"],
            *(t for t, _ in added_tokens),
        ]
        tok["tokenizer.ggml.token_type"] = [
            *tok["tokenizer.ggml.token_type"],
            *(kind for _, kind in added_tokens),
        ]
        if "tokenizer.ggml.scores" in tok:
            tok["tokenizer.ggml.scores"] = [
                *tok["tokenizer.ggml.scores"],
                *[0.0] * len(added_tokens),
            ]
    if eos_token is not None:
        tok["tokenizer.ggml.eos_token_id"] = list(tok["tokenizer.ggml.tokens"]).index(eos_token)
    if chat_template != "default":
        tok.pop("tokenizer.chat_template", None)
        if chat_template is not None:
            tok["tokenizer.chat_template"] = chat_template
    n_vocab = len(tok["tokenizer.ggml.tokens"])
    shape = LlamaShape(n_vocab, n_embd, n_layer, n_head, n_head_kv, n_ff, context_length)
    n_embd_kv = shape.head_dim * n_head_kv

    def matrix(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols), dtype=np.float32) * scale / np.sqrt(cols)).astype(
            np.float32
        )

    tensors: dict[str, np.ndarray] = {
        "token_embd.weight": matrix(n_vocab, n_embd) * np.sqrt(n_embd)
    }
    for i in range(n_layer):
        b = f"blk.{i}."
        tensors[b + "attn_norm.weight"] = np.ones(n_embd, np.float32)
        tensors[b + "attn_q.weight"] = matrix(n_embd, n_embd)
        tensors[b + "attn_k.weight"] = matrix(n_embd_kv, n_embd)
        tensors[b + "attn_v.weight"] = matrix(n_embd_kv, n_embd)
        tensors[b + "attn_output.weight"] = matrix(n_embd, n_embd)
        tensors[b + "ffn_norm.weight"] = np.ones(n_embd, np.float32)
        tensors[b + "ffn_gate.weight"] = matrix(n_ff, n_embd)
        tensors[b + "ffn_up.weight"] = matrix(n_ff, n_embd)
        tensors[b + "ffn_down.weight"] = matrix(n_embd, n_ff)
        if architecture == "qwen2":
            for part, rows in (("attn_q", n_embd), ("attn_k", n_embd_kv), ("attn_v", n_embd_kv)):
                tensors[b + part + ".bias"] = rng.standard_normal(rows).astype(np.float32) * 0.5
        if architecture == "qwen3":
            for part in ("attn_q_norm", "attn_k_norm"):
                tensors[b + part + ".weight"] = rng.uniform(0.5, 1.5, shape.head_dim).astype(
                    np.float32
                )
    tensors["output_norm.weight"] = np.ones(n_embd, np.float32)
    output = matrix(n_vocab, n_embd) * logit_scale
    if suppress_special:
        types = tok.get("tokenizer.ggml.token_type", [])
        control = [i for i, t in enumerate(types) if t in (2, 3)]  # unknown, control
        output[control] = 0.0  # logit 0, far below the best of the random rows
    if ascii_only:
        tokens = tok["tokenizer.ggml.tokens"]
        types = tok.get("tokenizer.ggml.token_type", [])
        raw = [i for i, t in enumerate(types) if t == 6 and tokens[i] != "<0x0A>"]
        output[raw] = 0.0
    if not tied_output:
        tensors["output.weight"] = output
    else:  # the output reuses the embeddings: sharpen those instead
        tensors["token_embd.weight"] = tensors["token_embd.weight"] * np.sqrt(logit_scale)
    if rope_freqs:  # Llama 3.1's factors: low frequencies slowed down
        pairs = shape.head_dim // 2
        tensors["rope_freqs.weight"] = np.linspace(1.0, 8.0, pairs, dtype=np.float32)
    if tensor_hook is not None:
        tensors = {k: tensor_hook(k, v) for k, v in tensors.items()}
    write_llama(
        path,
        shape,
        tensors,
        tok,
        name=name,
        qtype=qtype,
        architecture=architecture,
        store_as=store_as,
    )
    return path


_QUANTIZE = """
import ctypes, sys
import llama_cpp
params = llama_cpp.llama_model_quantize_default_params()
params.ftype = getattr(llama_cpp, "LLAMA_FTYPE_MOSTLY_" + sys.argv[3])
sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(),
                                        ctypes.byref(params)))
"""


def quantize(source: str | os.PathLike[str], target: str | os.PathLike[str], kind: str) -> Path:
    """Quantize a model with llama.cpp's own quantizer (``kind``: "Q4_K_M",
    "Q6_K", "Q5_K_S"...: the types the gguf package cannot write), in a
    subprocess: llama.cpp stays out of the calling process."""
    done = subprocess.run(
        [sys.executable, "-c", _QUANTIZE, str(source), str(target), kind.upper()],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"quantizing to {kind} failed: {done.stderr.strip()[-500:]}")
    return Path(target)


def write_lora_gguf(
    path: str | os.PathLike[str],
    base: str | os.PathLike[str],
    *,
    shape_ok: bool = True,
    rank: int = 4,
    base_file: str | None = None,
) -> Path:
    """A random LoRA adapter (on every layer's query projection) for the
    model at ``base``; ``shape_ok=False`` makes one llama.cpp refuses;
    ``base_file``: the base model's file name, recorded as our trainer does."""
    info = read_model_info(base)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_string("general.type", "adapter")
    w.add_string("adapter.type", "lora")
    w.add_float32("adapter.lora.alpha", float(rank))
    if base_file is not None:
        w.add_string("localchat.lora.base.file", base_file)
    rng = np.random.default_rng(0)
    n = info.n_embd
    for i in range(info.n_layer):
        a = rng.standard_normal((rank, n)).astype(np.float32)
        b = rng.standard_normal((n, rank if shape_ok else rank + 1)).astype(np.float32)
        w.add_tensor(f"blk.{i}.attn_q.weight.lora_a", a)
        w.add_tensor(f"blk.{i}.attn_q.weight.lora_b", b)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return Path(path)


POOLING = {"none": 0, "mean": 1, "cls": 2, "last": 3}
"""llama.cpp's pooling types, as GGUF's ``<arch>.pooling_type`` holds them."""


def write_bert_gguf(
    path: str | os.PathLike[str],
    *,
    n_embd: int = 32,
    n_layer: int = 2,
    n_head: int = 2,
    n_ff: int = 64,
    context_length: int = 512,
    pooling: str = "mean",
    seed: int = 0,
    name: str = "tiny-test-bert",
) -> Path:
    """A random-weight BERT embedding model with BGE's real WordPiece
    vocabulary (``fixtures/vocab/ggml-vocab-bert-bge.gguf``): what
    llama.cpp runs in embedding mode, pooled as ``pooling`` says."""
    path = Path(path)
    rng = np.random.default_rng(seed)
    info = read_model_info(fixture_vocab("bert-bge"), full_arrays=("tokenizer.",))
    tok = {k: v for k, v in info.metadata.items() if k.startswith("tokenizer.")}
    n_vocab = len(tok["tokenizer.ggml.tokens"])
    types = int(tok.pop("tokenizer.ggml.token_type_count", 2))

    def matrix(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)

    def vector(n: int, around: float = 0.0, spread: float = 0.1) -> np.ndarray:
        return (around + rng.standard_normal(n) * spread).astype(np.float32)

    tensors: dict[str, np.ndarray] = {
        "token_embd.weight": matrix(n_vocab, n_embd),
        "token_types.weight": matrix(types, n_embd),
        "position_embd.weight": matrix(context_length, n_embd),
        "token_embd_norm.weight": vector(n_embd, 1.0),
        "token_embd_norm.bias": vector(n_embd),
    }
    for i in range(n_layer):
        b = f"blk.{i}."
        for part in ("attn_q", "attn_k", "attn_v", "attn_output"):
            tensors[b + part + ".weight"] = matrix(n_embd, n_embd)
            tensors[b + part + ".bias"] = vector(n_embd)
        tensors[b + "attn_output_norm.weight"] = vector(n_embd, 1.0)
        tensors[b + "attn_output_norm.bias"] = vector(n_embd)
        tensors[b + "ffn_up.weight"] = matrix(n_ff, n_embd)
        tensors[b + "ffn_up.bias"] = vector(n_ff)
        tensors[b + "ffn_down.weight"] = matrix(n_embd, n_ff)
        tensors[b + "ffn_down.bias"] = vector(n_embd)
        tensors[b + "layer_output_norm.weight"] = vector(n_embd, 1.0)
        tensors[b + "layer_output_norm.bias"] = vector(n_embd)
    w = gguf.GGUFWriter(str(path), "bert")
    w.add_name(name)
    w.add_context_length(context_length)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_block_count(n_layer)
    w.add_head_count(n_head)
    w.add_layer_norm_eps(1e-12)
    w.add_causal_attention(False)
    w.add_pooling_type(gguf.PoolingType(POOLING[pooling]))
    w.add_token_type_count(types)
    for key, value in tok.items():
        add_kv(w, key, value)
    for tensor_name, array in tensors.items():
        w.add_tensor(tensor_name, array)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
