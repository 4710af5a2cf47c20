"""Training from scratch: its examples, held-out loss, checkpoints and export.

- **Examples.** The training text, tokenized, is one stream of tokens
  (paragraphs separated by a blank line). Each step takes ``batch`` windows of
  ``n_ctx + 1`` tokens starting at random offsets (sliding windows: every
  position can start one) and learns to predict each next token.
- **Optimiser.** AdamW (weight decay on the matrices only, not on norms),
  a linear warmup then a cosine decay to a tenth of the peak learning rate,
  gradients clipped to a global norm: the loop both trainers share
  (:mod:`.loop`).
- **Held-out loss.** Every ``eval_every`` steps (and at the end), the mean
  loss on non-overlapping windows of the held-out text; its exponential is the
  perplexity.
- **Checkpoints** carry everything needed to go on or to export: the model's
  config and weights, the optimiser, the step, the tokenizer, the settings,
  the loss history and the data report (written by :mod:`.checkpoint`, so a
  kill never leaves half a checkpoint). The batches of step ``s``
  come from a generator seeded with ``s``, so a resumed run draws exactly the
  batches the uninterrupted one would have.
- **Progress**: a :class:`Progress` per step to a callback (the CLI prints it
  as a JSON line or a bar; the window plots it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from localchat.core.trainer import checkpoint as ckpt
from localchat.core.trainer import data as data_mod
from localchat.core.trainer import loop
from localchat.core.trainer.checkpoint import FORMAT
from localchat.core.trainer.gguf_export import QTYPES, write_llama
from localchat.core.trainer.loop import OnProgress
from localchat.core.trainer.model import GPT, PRESETS, Config
from localchat.core.trainer.progress import Progress
from localchat.core.trainer.settings import TrainError, TrainSettings, schedule
from localchat.core.trainer.tokenizer import AnyTokenizer, GGUFTokenizer, from_json, train_bpe

__all__ = ["FORMAT", "OnProgress", "Progress", "TrainError", "TrainSettings", "schedule"]


@dataclass(kw_only=True)
class Run(loop.Run):
    """What a checkpoint holds, live."""

    config: Config
    settings: TrainSettings
    tokenizer: AnyTokenizer
    model: GPT


# -- data --------------------------------------------------------------------------------------


def token_stream(tokenizer: AnyTokenizer, paragraphs: Sequence[str]) -> np.ndarray:
    """The paragraphs as one stream of token ids, a blank line between them."""
    ids = tokenizer.encode_batch([p + "\n\n" for p in paragraphs])
    return np.fromiter((t for seq in ids for t in seq), dtype=np.int64)


def check_length(tokens: np.ndarray, n_ctx: int, what: str) -> None:
    if len(tokens) < n_ctx + 1:
        raise TrainError(
            f"the {what} text is {len(tokens):,} tokens, less than one context of "
            f"{n_ctx + 1:,}: give more text or choose a smaller preset"
        )


def batch_at(tokens: np.ndarray, step: int, settings: TrainSettings, n_ctx: int) -> torch.Tensor:
    """The windows step ``step`` trains on: the same for a given step and seed,
    whether or not the run was resumed."""
    g = torch.Generator().manual_seed(settings.seed * 1_000_003 + step)
    starts = torch.randint(0, len(tokens) - n_ctx, (settings.batch,), generator=g).numpy()
    return torch.from_numpy(np.stack([tokens[s : s + n_ctx + 1] for s in starts]))


def heldout_loss(model: GPT, tokens: np.ndarray, windows: int | None = None) -> float:
    """Mean next-token loss over non-overlapping windows of ``tokens``."""
    n_ctx = model.cfg.n_ctx
    count = (len(tokens) - 1) // n_ctx
    if windows is not None:
        count = min(count, windows)
    if count == 0:
        raise TrainError("the held-out text is shorter than one context")
    total, n = 0.0, 0
    with loop.evaluating(model):
        for i in range(0, count, 16):
            rows = [tokens[j * n_ctx : j * n_ctx + n_ctx + 1] for j in range(i, min(i + 16, count))]
            batch = torch.from_numpy(np.stack(rows))
            total += model.loss(batch).item() * len(rows)
            n += len(rows)
    return total / n


# -- runs --------------------------------------------------------------------------------------


def new_run(
    config: Config,
    settings: TrainSettings,
    tokenizer: AnyTokenizer,
    *,
    data_report: dict[str, Any] | None = None,
    description: str = "",
) -> Run:
    torch.manual_seed(settings.seed)
    model = GPT(config)
    return Run(
        config=config,
        settings=settings,
        tokenizer=tokenizer,
        model=model,
        optimizer=_optimizer(model, settings),
        data_report=data_report or {},
        description=description,
    )


def _optimizer(model: GPT, settings: TrainSettings) -> torch.optim.Optimizer:
    return loop.adamw(
        model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay, betas=(0.9, 0.95)
    )


def save(run: Run, path: Path) -> None:
    """Write the checkpoint atomically."""
    state = {
        "config": run.config.to_dict(),
        "settings": asdict(run.settings),
        "tokenizer": run.tokenizer.json_text,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "step": run.step,
        "history": run.history,
        "data_report": run.data_report,
        "description": run.description,
    }
    ckpt.save(state, path, "scratch")


def load(path: Path, *, settings: TrainSettings | None = None) -> Run:
    """A run from its checkpoint; ``settings`` may change how it goes on
    (more steps, another learning rate), not what the model is."""
    state = ckpt.load(path, "scratch")
    with ckpt.reading(path):
        config = Config(**state["config"])
        saved = TrainSettings(**state["settings"])
        tokenizer = from_json(state["tokenizer"])
    run_settings = settings or saved
    model = GPT(config)
    model.load_state_dict(state["model"])
    optimizer = _optimizer(model, run_settings)
    optimizer.load_state_dict(state["optimizer"])
    return Run(
        config=config,
        settings=run_settings,
        tokenizer=tokenizer,
        model=model,
        optimizer=optimizer,
        step=int(state["step"]),
        history=list(state["history"]),
        data_report=dict(state["data_report"]),
        description=str(state.get("description", "")),
    )


def train(
    run: Run,
    train_tokens: np.ndarray,
    heldout_tokens: np.ndarray,
    *,
    checkpoint: Path | None = None,
    on_progress: OnProgress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Run:
    """Train ``run`` up to ``run.settings.steps`` (from where it is)."""
    s, n_ctx = run.settings, run.config.n_ctx
    check_length(train_tokens, n_ctx, "training")
    check_length(heldout_tokens, n_ctx, "held-out")

    def step_loss(step: int) -> tuple[float, int]:
        loss = run.model.loss(batch_at(train_tokens, step, s, n_ctx))
        loss.backward()
        return float(loss.item()), s.batch * n_ctx

    run.model.train()
    loop.run_steps(
        run,
        s,
        s.steps,
        run.model.parameters(),
        step_loss=step_loss,
        heldout=lambda: heldout_loss(run.model, heldout_tokens, s.eval_windows),
        save=(lambda: save(run, checkpoint)) if checkpoint is not None else None,
        on_progress=on_progress,
        should_stop=should_stop,
    )
    return run


def export(
    run: Run,
    path: Path,
    *,
    name: str,
    quantize: str = "f32",
    license: str = "",
    description: str = "",
) -> Path:
    """Write the model as a GGUF llama.cpp chats with (ChatML template)."""
    if quantize not in QTYPES:
        raise TrainError(f"quantize to one of {', '.join(QTYPES)}")
    metadata: dict[str, Any] = {
        "general.description": description or run.description,
        "general.source.url": "made with localchat train scratch",
        "localchat.train.steps": run.step,
    }
    if license:
        metadata["general.license"] = license
    tmp = path.with_name(path.name + ".part")
    try:
        write_llama(
            tmp,
            run.config.shape(),
            run.model.gguf_tensors(),
            run.tokenizer.gguf_keys(),
            name=name,
            qtype=QTYPES[quantize],
            metadata=metadata,
        )
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise TrainError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


# -- from text to a model, the whole way --------------------------------------------------------


def preset(name: str, vocab_size: int) -> Config:
    if name not in PRESETS:
        raise TrainError(f"no preset {name!r}; choose one of {', '.join(PRESETS)}")
    return Config(vocab_size=vocab_size, **PRESETS[name])


def prepare_tokens(
    corpus: data_mod.Corpus, tokenizer: AnyTokenizer
) -> tuple[np.ndarray, np.ndarray]:
    return token_stream(tokenizer, corpus.train), token_stream(tokenizer, corpus.heldout)


def scratch(
    paths: Sequence[str | Path],
    *,
    preset_name: str = "mini",
    vocab_size: int = 2048,
    tokenizer_from: str | Path | None = None,
    settings: TrainSettings | None = None,
    checkpoint: Path | None = None,
    on_progress: OnProgress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[Run, data_mod.Corpus, np.ndarray, np.ndarray]:
    """Prepare the data, train a tokenizer (or reuse ``tokenizer_from``'s, a
    GGUF model's), then the model. With an existing ``checkpoint`` the run
    goes on from it (same data, same tokenizer)."""
    settings = settings or TrainSettings()
    corpus = data_mod.prepare(paths)
    if checkpoint is not None and checkpoint.exists():
        run = load(checkpoint, settings=settings)
    else:
        tokenizer: AnyTokenizer = (
            GGUFTokenizer(tokenizer_from) if tokenizer_from else train_bpe(corpus.train, vocab_size)
        )
        config = preset(preset_name, tokenizer.vocab_size)
        described = ", ".join(Path(p).name for p in paths)
        run = new_run(
            config,
            settings,
            tokenizer,
            data_report=asdict(corpus.report),
            description=f"trained from scratch on {described}",
        )
    train_tokens, heldout_tokens = prepare_tokens(corpus, run.tokenizer)
    if isinstance(run.tokenizer, GGUFTokenizer):
        run.tokenizer.close()  # its engine is only needed for tokenizing
    train(
        run,
        train_tokens,
        heldout_tokens,
        checkpoint=checkpoint,
        on_progress=on_progress,
        should_stop=should_stop,
    )
    return run, corpus, train_tokens, heldout_tokens
