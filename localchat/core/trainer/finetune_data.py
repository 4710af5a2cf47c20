"""A LoRA fine-tune's data: text and chat files read, cleaned, split and tokenized.

Text files and folders become windows of the base model's tokens (cleaned,
deduplicated and split as in the from-scratch trainer), learned in full;
chat JSONL becomes conversations rendered with the base model's own chat
template, only the assistant turns learned. Everything is tokenized by
llama.cpp with the base model's vocabulary. No PyTorch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from localchat.core.engine.template import ChatTemplate
from localchat.core.trainer import chat_data
from localchat.core.trainer import data as data_mod
from localchat.core.trainer.chat_data import Example
from localchat.core.trainer.tokenizer import GGUFTokenizer


@dataclass
class Dataset:
    train: list[Example]
    heldout: list[Example]
    report: dict[str, Any]
    description: str

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for part in (self.train, self.heldout):
            for ex in part:
                digest.update(np.asarray(ex.tokens, dtype=np.int64).tobytes())
                digest.update(bytes(ex.learn))
            digest.update(b"|")
        return digest.hexdigest()


def _split_paths(paths: Sequence[str | Path]) -> tuple[list[Path], list[Path]]:
    """(text files and folders, chat JSONL files); folders' JSONL files count as chats."""
    text: list[Path] = []
    chats: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_file() and path.suffix.lower() == ".jsonl":
            chats.append(path)
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*.jsonl") if p.is_file())
            chats += found
            suffixes = data_mod.TEXT_SUFFIXES
            if any(p.is_file() and p.suffix.lower() in suffixes for p in path.rglob("*")):
                text.append(path)
            elif not found:
                raise data_mod.DataError(f"{path} has no text or chat (.jsonl) files")
        else:
            text.append(path)
    return text, chats


template_for = chat_data.template_for


def prepare(
    paths: Sequence[str | Path],
    tokenizer: GGUFTokenizer,
    template: ChatTemplate,
    ctx: int,
    *,
    heldout: float = 0.1,
    notes: Sequence[str] = (),
) -> Dataset:
    """Read, clean, deduplicate, split and tokenize the data (see the module).

    ``notes``: what gave nothing to learn before the data got here (chats
    without a finished reply, :func:`chat_data.skipped_line`), added to the
    error when too little is left."""
    why = "".join(f"; {n}" for n in notes if n)
    text_paths, chat_files = _split_paths(paths)
    report: dict[str, Any] = {}
    train: list[Example] = []
    held: list[Example] = []
    bos = tokenizer.encode("", add_bos=True)
    if text_paths:
        corpus = data_mod.prepare(text_paths, heldout=heldout)
        report["text"] = asdict(corpus.report)
        for paragraphs, out in ((corpus.train, train), (corpus.heldout, held)):
            ids = tokenizer.encode_batch([p + "\n\n" for p in paragraphs])
            stream = [t for seq in ids for t in seq]
            width = ctx - len(bos)
            for start in range(0, len(stream), width):
                window = stream[start : start + width]
                if len(window) >= 8 or not out:
                    out.append(Example([*bos, *window], [False] * len(bos) + [True] * len(window)))
    if chat_files:
        conversations = [c for f in chat_files for c in chat_data.read_jsonl(f)]
        texts = [chat_data.render_text(c, template) for c in conversations]
        first = {t: c for t, c in reversed(list(zip(texts, conversations, strict=True)))}
        stats = data_mod.Report()
        unique = data_mod.deduplicate(list(dict.fromkeys(texts)), report=stats)
        if len(unique) < 2:
            raise data_mod.DataError(
                "the chat data is a single conversation once deduplicated; it needs at least "
                f"two (one is held out to measure the result){why}"
            )
        truncated = 0
        chat_train: list[Example] = []
        chat_held: list[Example] = []
        for text in unique:
            ex = chat_data.example(first[text], template, _special(tokenizer))
            if len(ex) > ctx:
                truncated += 1
                ex = Example(ex.tokens[:ctx], ex.learn[:ctx])
            if ex.learned:
                (chat_held if data_mod.heldout_side(text, heldout) else chat_train).append(ex)
        if not chat_held and len(chat_train) > 1:
            chat_held.append(chat_train.pop())
        if not chat_train:
            raise data_mod.DataError(
                f"no conversation has an assistant reply within the first {ctx} tokens: "
                f"raise --ctx{why}"
            )
        report["chats"] = {
            "files": len(chat_files),
            "conversations": len(conversations),
            "duplicates": len(conversations) - len(unique),
            "truncated": truncated,
            "train": len(chat_train),
            "heldout": len(chat_held),
        }
        train += chat_train
        held += chat_held
    if not train or not held:
        raise data_mod.DataError(f"the data is too small to hold some of it out: give more{why}")
    report["train_examples"], report["heldout_examples"] = len(train), len(held)
    report["train_tokens"] = sum(len(e) for e in train)
    report["learned_tokens"] = sum(e.learned for e in train)
    return Dataset(train, held, report, describe([*text_paths, *chat_files]))


def _special(tokenizer: GGUFTokenizer) -> chat_data.Encode:
    def encode(text: str, add_bos: bool) -> list[int]:
        return tokenizer.encode(text, special=True, add_bos=add_bos)

    return encode


def describe(paths: Sequence[str | Path]) -> str:
    """What a run was trained on, for its metadata: the files' names."""
    return ", ".join(Path(p).name for p in paths)
