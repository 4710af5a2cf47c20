"""Fine-tuning a downloaded GGUF model with LoRA, and the adapter it makes.

The whole path of ``localchat train lora``:

1. **Check** the base model (:func:`base.check`: a supported architecture)
   and **estimate** the memory the run needs (:mod:`.memory`): float32 when
   that fits in the free memory, else bfloat16; a clear refusal when even
   that does not fit.
2. **Data** (:mod:`.finetune_data`): text files and folders become windows
   of the model's tokens, learned in full; chat JSONL becomes conversations
   rendered with the base model's own chat template, only the assistant
   turns learned.
3. **Train** (:func:`train`, on :mod:`.loop`): adapters on the chosen
   matrices, AdamW with warmup and cosine decay, gradient accumulation, the
   held-out loss before the first step and every ``eval_every`` steps, an
   early stop when it has not improved for ``patience`` evaluations (the best
   adapter is the one kept), checkpoints (:mod:`.checkpoint`) that a later
   run goes on from (the batches of each step are fixed by the seed, so a
   resumed run trains on what the uninterrupted one would have).
4. **Export** the adapter as the GGUF llama.cpp applies (:mod:`.lora`), and
   **prove** it: llama.cpp's perplexity on the held-out data without and
   with it (:func:`measure`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from localchat.core import hardware
from localchat.core.trainer import base as base_mod
from localchat.core.trainer import checkpoint as ckpt
from localchat.core.trainer import loop
from localchat.core.trainer import lora as lora_mod
from localchat.core.trainer.chat_data import Example
from localchat.core.trainer.checkpoint import FORMAT
from localchat.core.trainer.finetune_data import Dataset, _special, prepare, template_for
from localchat.core.trainer.loop import OnProgress
from localchat.core.trainer.memory import GB, RUNTIME_BYTES, Estimate, estimate, plan
from localchat.core.trainer.model import GPT
from localchat.core.trainer.options import LORA_PRESETS
from localchat.core.trainer.progress import Progress
from localchat.core.trainer.settings import FinetuneSettings, LoRASettings, TrainError

__all__ = [
    "FORMAT",
    "GB",
    "RUNTIME_BYTES",
    "Dataset",
    "Estimate",
    "FinetuneSettings",
    "_special",
    "estimate",
    "hardware",
    "plan",
    "prepare",
    "template_for",
]

IGNORE = -100

PRESETS: dict[str, tuple[LoRASettings, dict[str, Any]]] = {
    # the LoRA presets (declared in .options) as (adapter, run settings that differ)
    name: (LoRASettings(rank=p.rank, alpha=p.alpha), {"epochs": p.epochs, "lr": p.lr})
    for name, p in LORA_PRESETS.items()
}


# -- training ------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Run(loop.Run):
    """What a LoRA checkpoint holds, live."""

    base: base_mod.BaseModel
    lora: LoRASettings
    settings: FinetuneSettings
    layers: dict[str, lora_mod.LoRALinear]
    total_steps: int
    best_loss: float | None = None
    best_state: dict[str, torch.Tensor] | None = None
    evals_since_best: int = 0
    stopped_early: bool = False
    data_fingerprint: str = ""
    first_heldout: float | None = None

    @property
    def model(self) -> GPT:
        return self.base.model

    @property
    def device(self) -> torch.device:
        return self.model.embed.weight.device


def total_steps(settings: FinetuneSettings, n_train: int) -> int:
    if settings.steps:
        return settings.steps
    per_step = settings.batch * settings.accum
    return max(1, math.ceil(settings.epochs * n_train / per_step))


def load_base(path: str | os.PathLike[str], settings: FinetuneSettings, need: Estimate) -> Any:
    dtype = torch.bfloat16 if need.dtype == "bfloat16" else torch.float32
    return base_mod.load(path, n_ctx=settings.ctx, dtype=dtype, device=need.device)


def new_run(
    base: base_mod.BaseModel,
    lora: LoRASettings,
    settings: FinetuneSettings,
    dataset: Dataset,
) -> Run:
    torch.manual_seed(settings.seed)
    layers = lora_mod.inject(base.model, lora)
    return Run(
        base=base,
        lora=lora,
        settings=settings,
        layers=layers,
        optimizer=_optimizer(layers, settings),
        total_steps=total_steps(settings, len(dataset.train)),
        data_fingerprint=dataset.fingerprint,
        description=dataset.description,
        data_report=dataset.report,
    )


def _optimizer(
    layers: dict[str, lora_mod.LoRALinear], settings: FinetuneSettings
) -> torch.optim.Optimizer:
    params = lora_mod.lora_parameters(layers)
    return loop.adamw(
        params, lr=settings.lr, weight_decay=settings.weight_decay, betas=(0.9, 0.999)
    )


def save(run: Run, path: Path) -> None:
    """The checkpoint (atomically): the adapter, the optimiser, where the run is."""
    state = {
        "base_sha256": run.base.sha256,
        "base_path": str(run.base.path),
        "lora": asdict(run.lora),
        "settings": asdict(run.settings),
        "adapter": lora_mod.lora_state(run.layers),
        "optimizer": run.optimizer.state_dict(),
        "step": run.step,
        "total_steps": run.total_steps,
        "history": run.history,
        "best_loss": run.best_loss,
        "best_state": run.best_state,
        "evals_since_best": run.evals_since_best,
        "stopped_early": run.stopped_early,
        "data_fingerprint": run.data_fingerprint,
        "description": run.description,
        "data_report": run.data_report,
        "first_heldout": run.first_heldout,
        "rng": torch.get_rng_state(),  # dropout's, so a resumed run draws the same masks
    }
    ckpt.save(state, path, "lora")


def resume(
    path: Path, base: base_mod.BaseModel, settings: FinetuneSettings, dataset: Dataset
) -> Run:
    """Go on from a checkpoint: same base file, same data; ``settings`` may
    add steps or epochs."""
    state = ckpt.load(path, "lora")
    with ckpt.reading(path):
        lora = LoRASettings(**{**state["lora"], "targets": tuple(state["lora"]["targets"])})
    if state["base_sha256"] != base.sha256:
        raise TrainError(
            f"the checkpoint {path.name} was made from another base model "
            f"({Path(state['base_path']).name}): pass --restart to start over"
        )
    if state["data_fingerprint"] != dataset.fingerprint:
        raise TrainError(
            f"the checkpoint {path.name} was made from other data (or another --ctx): "
            "pass --restart to start over"
        )
    layers = lora_mod.inject(base.model, lora)
    lora_mod.load_lora_state(layers, state["adapter"])
    optimizer = _optimizer(layers, settings)
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    return Run(
        base=base,
        lora=lora,
        settings=settings,
        layers=layers,
        optimizer=optimizer,
        total_steps=total_steps(settings, len(dataset.train)),
        step=int(state["step"]),
        history=list(state["history"]),
        best_loss=state["best_loss"],
        best_state=state["best_state"],
        evals_since_best=int(state["evals_since_best"]),
        data_fingerprint=dataset.fingerprint,
        description=str(state["description"]),
        data_report=dict(state["data_report"]),
        first_heldout=state.get("first_heldout"),
    )


def _batch(examples: Sequence[Example], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets (``IGNORE`` where nothing is learned), padded."""
    n = max(len(e) for e in examples)
    inputs = torch.zeros((len(examples), n - 1), dtype=torch.long)
    targets = torch.full((len(examples), n - 1), IGNORE, dtype=torch.long)
    for row, ex in enumerate(examples):
        tokens = torch.tensor(ex.tokens, dtype=torch.long)
        inputs[row, : len(ex) - 1] = tokens[:-1]
        learn = torch.tensor(ex.learn[1:], dtype=torch.bool)
        targets[row, : len(ex) - 1] = torch.where(learn, tokens[1:], IGNORE)
    return inputs.to(device), targets.to(device)


def loss_sum(model: GPT, examples: Sequence[Example], device: torch.device) -> torch.Tensor:
    """Summed cross-entropy over the learned tokens (logits only where needed)."""
    inputs, targets = _batch(examples, device)
    hidden = model.hidden(inputs)
    learned = targets != IGNORE
    logits = model.head(hidden[learned]).float()
    return F.cross_entropy(logits, targets[learned], reduction="sum")


def heldout_loss(run: Run, examples: Sequence[Example], limit: int = 0) -> float:
    """Mean loss per learned token of the held-out examples."""
    chosen = list(examples[:limit] if limit else examples)
    total, count = 0.0, 0
    with loop.evaluating(run.model):
        for i in range(0, len(chosen), run.settings.batch):
            part = chosen[i : i + run.settings.batch]
            total += float(loss_sum(run.model, part, run.device).item())
            count += sum(e.learned for e in part)
    return total / max(count, 1)


class Order:
    """Which training examples each micro-batch takes: epoch after epoch, each
    a permutation fixed by the seed and the epoch's number."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = n, seed
        self._perms: dict[int, torch.Tensor] = {}

    def take(self, start: int, count: int) -> list[int]:
        out = []
        for k in range(start, start + count):
            epoch = k // self.n
            if epoch not in self._perms:
                g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                self._perms = {epoch: torch.randperm(self.n, generator=g)}
            out.append(int(self._perms[epoch][k % self.n]))
        return out


def train(
    run: Run,
    dataset: Dataset,
    *,
    checkpoint: Path | None = None,
    on_progress: OnProgress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Run:
    """Train ``run`` up to its total steps (from where it is), or until the
    held-out loss stops improving."""
    s = run.settings
    if run.first_heldout is None:
        run.first_heldout = heldout_loss(run, dataset.heldout, s.eval_examples)
        run.best_loss = run.first_heldout
        run.best_state = lora_mod.lora_state(run.layers)  # no better one yet: the start
        before = Progress(0, run.total_steps, math.nan, 0.0, 0.0, 0.0, run.first_heldout)
        run.history.append(before.to_dict())
        if on_progress is not None:
            on_progress(before)  # the held-out loss before training: where the curve starts
    order = Order(len(dataset.train), s.seed)
    per_step = s.batch * s.accum

    def step_loss(step: int) -> tuple[float, int]:
        picks = order.take(step * per_step, per_step)
        micro = [
            [dataset.train[i] for i in picks[j : j + s.batch]] for j in range(0, per_step, s.batch)
        ]
        learned = max(sum(e.learned for part in micro for e in part), 1)
        total, seen = 0.0, 0
        for part in micro:
            loss = loss_sum(run.model, part, run.device) / learned
            loss.backward()
            total += float(loss.item())
            seen += sum(len(e) - 1 for e in part)
        return total, seen

    run.model.train()
    loop.run_steps(
        run,
        s,
        run.total_steps,
        lora_mod.lora_parameters(run.layers),
        step_loss=step_loss,
        heldout=lambda: heldout_loss(run, dataset.heldout, s.eval_examples),
        judge=lambda held: _judge(run, held),
        save=(lambda: save(run, checkpoint)) if checkpoint is not None else None,
        on_progress=on_progress,
        should_stop=should_stop,
    )
    run.model.eval()
    return run


def _judge(run: Run, held: float) -> bool:
    """Keep the best adapter; stop (True) when ``patience`` evaluations did not beat it."""
    if run.best_loss is None or held < run.best_loss - 1e-4:
        run.best_loss = held
        run.best_state = lora_mod.lora_state(run.layers)
        run.evals_since_best = 0
        return False
    run.evals_since_best += 1
    if run.settings.patience and run.evals_since_best >= run.settings.patience:
        run.stopped_early = True
    return run.stopped_early


def best_state(run: Run) -> dict[str, torch.Tensor]:
    """The adapter to export: the one with the best held-out loss seen."""
    return run.best_state if run.best_state is not None else lora_mod.lora_state(run.layers)


def export(run: Run, path: Path, *, name: str = "") -> Path:
    """Write the best adapter as the GGUF llama.cpp applies."""
    last = next((h["heldout_loss"] for h in reversed(run.history) if h.get("heldout_loss")), None)
    metadata: dict[str, Any] = {
        "general.description": f"LoRA fine-tune of {run.base.name} on {run.description}",
        "general.source.url": "made with localchat train lora",
        lora_mod.META + "data": run.description,
        lora_mod.META + "train": json.dumps(asdict(run.settings), sort_keys=True),
        lora_mod.META + "steps": run.step,
    }
    if run.first_heldout is not None:
        metadata[lora_mod.META + "heldout_loss_before"] = float(run.first_heldout)
    if run.best_loss is not None or last is not None:
        metadata[lora_mod.META + "heldout_loss_after"] = float(run.best_loss or last or 0.0)
    return lora_mod.write_adapter(
        path,
        architecture=run.base.architecture,
        settings=run.lora,
        state=best_state(run),
        name=name or path.stem,
        base_name=run.base.name,
        base_file=run.base.path.name,
        base_sha256=run.base.sha256,
        metadata=metadata,
    )


@dataclass(frozen=True)
class Measured:
    """llama.cpp's perplexity on the held-out data's learned tokens."""

    before: float
    after: float
    tokens: int


def measure(
    base_path: str | Path,
    adapter: str | Path,
    examples: Sequence[Example],
    ctx: int,
) -> Measured:
    """llama.cpp's perplexity on the learned tokens of ``examples`` (each
    from an empty cache), without and with the adapter."""
    from localchat.core.engine.client import Engine
    from localchat.core.params import GenerationSettings

    sequences = [e.tokens for e in examples]
    learn = [e.learn for e in examples]
    settings = GenerationSettings(ctx=max(ctx, 256))
    with Engine() as engine:
        engine.load(base_path, settings)
        before = engine.score(sequences, learn)
        engine.load(base_path, settings, lora=adapter)
        after = engine.score(sequences, learn)
    return Measured(before.perplexity, after.perplexity, before.tokens)
