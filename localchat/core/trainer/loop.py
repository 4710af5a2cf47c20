"""The training loop both trainers share: steps, schedule, clipping, evaluations, checkpoints.

A trainer gives :func:`run_steps` what differs (how one step's loss is
computed and backpropagated, how the held-out loss is measured, what to do
with it, how to save); the loop does the rest the same way for both: the
learning rate of each step (warmup then cosine, :func:`.settings.schedule`),
the optimiser step after clipping the gradients, a held-out evaluation every
``eval_every`` steps and at the last, a :class:`.progress.Progress` per step
(kept in the run's history and given to ``on_progress``), a checkpoint every
``checkpoint_every`` steps and at the end, and a stop when asked.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from localchat.core.trainer.progress import Progress
from localchat.core.trainer.settings import schedule

OnProgress = Callable[[Progress], None]


class LoopSettings(Protocol):
    @property
    def lr(self) -> float: ...
    @property
    def warmup(self) -> int: ...
    @property
    def grad_clip(self) -> float: ...
    @property
    def eval_every(self) -> int: ...
    @property
    def checkpoint_every(self) -> int: ...
    @property
    def threads(self) -> int: ...


@dataclass(kw_only=True)
class Run:
    """What both trainers' runs hold: the optimiser, where the run is, and
    what it was trained on."""

    optimizer: torch.optim.Optimizer
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    description: str = ""
    data_report: dict[str, Any] = field(default_factory=dict)


def adamw(
    params: Iterable[nn.Parameter], *, lr: float, weight_decay: float, betas: tuple[float, float]
) -> torch.optim.Optimizer:
    """AdamW with weight decay on the matrices only (not on norms and biases)."""
    chosen = list(params)
    decay = [p for p in chosen if p.ndim >= 2]
    other = [p for p in chosen if p.ndim < 2]
    groups: list[dict[str, Any]] = [{"params": decay, "weight_decay": weight_decay}]
    if other:
        groups.append({"params": other, "weight_decay": 0.0})
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """The model in eval mode (no dropout), without gradients; as it was after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def run_steps(
    run: Run,
    settings: LoopSettings,
    total: int,
    params: Iterable[nn.Parameter],
    *,
    step_loss: Callable[[int], tuple[float, int]],
    heldout: Callable[[], float],
    judge: Callable[[float], bool] | None = None,
    save: Callable[[], None] | None = None,
    on_progress: OnProgress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> None:
    """Train ``run`` from its step up to ``total``.

    ``step_loss(step)`` computes the step's loss and its gradients (they are
    zero before) and returns the loss and the tokens it read; ``heldout()``
    measures the held-out loss; ``judge(loss)`` (after each evaluation) says
    whether to stop early; ``save()`` writes the checkpoint."""
    s = settings
    if s.threads:
        torch.set_num_threads(s.threads)
    params = list(params)
    start, first, seen = time.perf_counter(), run.step, 0
    while run.step < total:
        if should_stop is not None and should_stop():
            break
        lr = schedule(run.step, s.lr, s.warmup, total)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        run.optimizer.zero_grad(set_to_none=True)
        loss, tokens = step_loss(run.step)
        seen += tokens
        torch.nn.utils.clip_grad_norm_(params, s.grad_clip)
        run.optimizer.step()
        run.step += 1
        elapsed = time.perf_counter() - start
        held, stop_early = None, False
        if run.step % s.eval_every == 0 or run.step == total:
            held = heldout()
            stop_early = judge(held) if judge is not None else False
        speed = seen / elapsed if elapsed > 0 else 0.0
        eta = (total - run.step) * elapsed / (run.step - first)
        progress = Progress(run.step, total, loss, lr, speed, eta, held)
        run.history.append(progress.to_dict())
        if on_progress is not None:
            on_progress(progress)
        if save is not None and (run.step % s.checkpoint_every == 0 or stop_early):
            save()
        if stop_early:
            break
    if save is not None:
        save()
