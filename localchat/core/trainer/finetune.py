"""Fine-tuning a downloaded GGUF model with LoRA, and the adapter it makes.

The whole path of ``localchat train lora``:

1. **Check** the base model (:func:`base.check`: a supported architecture)
   and **estimate** the memory the run needs (:func:`estimate`): the frozen
   weights, the adapter with its gradients and AdamW state, the activations
   kept for the backward pass, the logits. Float32 when that fits in the
   free memory, else bfloat16; a clear refusal when even that does not fit.
2. **Data** (:func:`prepare`): text files and folders become windows of the
   model's tokens (cleaned, deduplicated and split as in the from-scratch
   trainer), learned in full; chat JSONL becomes conversations rendered with
   the base model's own chat template, only the assistant turns learned.
   Everything is tokenized by llama.cpp with the base model's vocabulary.
3. **Train** (:func:`train`): adapters on the chosen matrices, AdamW with
   warmup and cosine decay, gradient accumulation, the held-out loss every
   ``eval_every`` steps, an early stop when it has not improved for
   ``patience`` evaluations (the best adapter is the one kept), checkpoints
   that a later run goes on from (the batches of each step are fixed by the
   seed, so a resumed run trains on what the uninterrupted one would have).
4. **Export** the adapter as the GGUF llama.cpp applies (:mod:`.lora`), and
   **prove** it: llama.cpp's perplexity on the held-out data without and
   with it (:func:`measure`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from localchat import __version__
from localchat.core import hardware
from localchat.core.engine.template import ChatTemplate
from localchat.core.trainer import base as base_mod
from localchat.core.trainer import chat_data
from localchat.core.trainer import data as data_mod
from localchat.core.trainer import lora as lora_mod
from localchat.core.trainer.chat_data import Example
from localchat.core.trainer.model import GPT, Config
from localchat.core.trainer.tokenizer import GGUFTokenizer
from localchat.core.trainer.train import OnProgress, Progress, TrainError, schedule

FORMAT = 1
GB = 1024**3
IGNORE = -100


@dataclass(frozen=True)
class FinetuneSettings:
    ctx: int = 512
    """The longest sequence trained on, in tokens."""
    batch: int = 4
    accum: int = 1
    """Gradient accumulation: micro-batches per optimiser step."""
    epochs: float = 2.0
    steps: int = 0
    """Optimiser steps (0: as many as ``epochs`` passes over the data take)."""
    lr: float = 2e-4
    warmup: int = 10
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    eval_every: int = 25
    eval_examples: int = 64
    """At most this many held-out examples per evaluation."""
    patience: int = 3
    """Stop after this many evaluations without a better held-out loss (0: never)."""
    checkpoint_every: int = 50
    seed: int = 0
    threads: int = 0
    dtype: str = "auto"
    """float32, bfloat16, or auto (float32 where it fits)."""
    device: str = "auto"
    """cpu, cuda, or auto (cuda where PyTorch has it)."""

    def __post_init__(self) -> None:
        if self.ctx < 16:
            raise TrainError("the training context must be at least 16 tokens")
        if self.batch < 1 or self.accum < 1:
            raise TrainError("the batch and the accumulation must be at least 1")
        if self.steps < 0 or self.epochs <= 0:
            raise TrainError("give a positive number of epochs or steps")
        if self.dtype not in ("auto", "float32", "bfloat16"):
            raise TrainError("the dtype is auto, float32 or bfloat16")
        if self.device not in ("auto", "cpu", "cuda"):
            raise TrainError("the device is auto, cpu or cuda")


PRESETS: dict[str, tuple[lora_mod.LoRASettings, dict[str, Any]]] = {
    "quick": (lora_mod.LoRASettings(rank=8, alpha=16.0), {"epochs": 1.0, "lr": 3e-4}),
    "balanced": (lora_mod.LoRASettings(rank=16, alpha=32.0), {"epochs": 2.0, "lr": 2e-4}),
    "thorough": (lora_mod.LoRASettings(rank=32, alpha=64.0), {"epochs": 4.0, "lr": 1e-4}),
}


# -- memory --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """What a run needs, in bytes."""

    weights: int
    adapter: int
    activations: int
    logits: int
    runtime: int
    dtype: str
    device: str

    @property
    def total(self) -> int:
        return self.weights + self.adapter + self.activations + self.logits + self.runtime

    def describe(self) -> str:
        return (
            f"{self.total / GB:.1f} GB ({self.weights / GB:.1f} GB of {self.dtype} weights, "
            f"{(self.activations + self.logits) / GB:.1f} GB of activations)"
        )


RUNTIME_BYTES = 380 << 20
"""Python, PyTorch and the data, measured on a small run (benchmarks/lora.py)."""


def lora_parameter_count(config: Config, lora: lora_mod.LoRASettings) -> int:
    e, f = config.n_embd, config.n_ff
    width, kv = config.n_head * config.head_dim, config.n_head_kv * config.head_dim
    shapes = {"q": (e, width), "k": (e, kv), "v": (e, kv), "o": (width, e)}
    shapes |= {"gate": (e, f), "up": (e, f), "down": (f, e)}
    per_layer = sum(lora.rank * (i + o) for t, (i, o) in shapes.items() if t in lora.targets)
    return per_layer * config.n_layer


def estimate(
    config: Config,
    n_params: int,
    lora: lora_mod.LoRASettings,
    settings: FinetuneSettings,
    *,
    dtype: str = "float32",
    device: str = "cpu",
) -> Estimate:
    """The memory a run needs at its peak: a backward pass over one micro-batch
    of ``batch`` sequences of ``ctx`` tokens."""
    size = 2 if dtype == "bfloat16" else 4
    e, f = config.n_embd, config.n_ff
    width, kv = config.n_head * config.head_dim, config.n_head_kv * config.head_dim
    tokens = settings.batch * settings.ctx
    # kept for the backward pass, per token and layer: the projections' outputs,
    # the rotated queries and keys, the keys and values repeated for each query
    # head, the attention's output, the feed-forward's four intermediates, each
    # adapter's own (its input in float32, A x), and about 15 vectors of the
    # model's width (the norms' steps, the residual stream, reshaped copies):
    # measured with benchmarks/lora.py, within 15% from 20M to 60M parameters
    kept = 15 * e + 2 * (width + 2 * kv) + 2 * width + 2 * width + 4 * f
    adapted = {"q": e, "k": e, "v": e, "o": width, "gate": e, "up": e, "down": f}
    lora_kept = sum(adapted[t] + lora.rank for t in lora.targets)
    activations = tokens * config.n_layer * (kept * size + lora_kept * 4)
    logits = tokens * config.vocab_size * 4 * 3  # logits, their softmax, its gradient
    adapter = lora_parameter_count(config, lora) * 4 * 4  # weights, grads, AdamW's two
    return Estimate(
        weights=n_params * size,
        adapter=adapter,
        activations=activations,
        logits=logits,
        runtime=RUNTIME_BYTES,
        dtype=dtype,
        device=device,
    )


def plan(
    path: str | os.PathLike[str], lora: lora_mod.LoRASettings, settings: FinetuneSettings
) -> Estimate:
    """Choose the device and dtype for a run on ``path``, or refuse it: the
    estimate must fit in the free memory (RAM, or the GPU's)."""
    info, config = base_mod.check(path)
    cuda = torch.cuda.is_available()
    if settings.device == "cuda" and not cuda:
        raise TrainError("PyTorch has no CUDA device here: use --device cpu")
    device = "cuda" if cuda and settings.device != "cpu" else "cpu"
    config = replace(config, n_ctx=settings.ctx)
    n_params = info.parameter_count or sum(t.n_elements for t in info.tensors)
    if device == "cuda":
        free = torch.cuda.mem_get_info()[0]
    else:
        found = hardware.memory()
        free = found[1] if found else 0
    choices = [settings.dtype] if settings.dtype != "auto" else ["float32", "bfloat16"]
    for dtype in choices:
        need = estimate(config, n_params, lora, settings, dtype=dtype, device=device)
        if not free or need.total <= 0.9 * free:
            return need
    raise TrainError(
        f"fine-tuning {info.path.name} needs about {need.describe()}, but only "
        f"{free / GB:.1f} GB {'of GPU memory' if device == 'cuda' else 'of RAM'} is free: "
        "lower --batch or --ctx, or choose a smaller model"
    )


# -- data ----------------------------------------------------------------------------------------


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
) -> Dataset:
    """Read, clean, deduplicate, split and tokenize the data (see the module)."""
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
                "two (one is held out to measure the result)"
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
                f"no conversation has an assistant reply within the first {ctx} tokens: raise --ctx"
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
        raise data_mod.DataError("the data is too small to hold some of it out: give more")
    report["train_examples"], report["heldout_examples"] = len(train), len(held)
    report["train_tokens"] = sum(len(e) for e in train)
    report["learned_tokens"] = sum(e.learned for e in train)
    return Dataset(train, held, report, lora_mod.describe([*text_paths, *chat_files]))


def _special(tokenizer: GGUFTokenizer) -> chat_data.Encode:
    def encode(text: str, add_bos: bool) -> list[int]:
        return tokenizer.encode(text, special=True, add_bos=add_bos)

    return encode


# -- training ------------------------------------------------------------------------------------


@dataclass
class Run:
    base: base_mod.BaseModel
    lora: lora_mod.LoRASettings
    settings: FinetuneSettings
    layers: dict[str, lora_mod.LoRALinear]
    optimizer: torch.optim.Optimizer
    total_steps: int
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_loss: float | None = None
    best_state: dict[str, torch.Tensor] | None = None
    evals_since_best: int = 0
    stopped_early: bool = False
    data_fingerprint: str = ""
    description: str = ""
    data_report: dict[str, Any] = field(default_factory=dict)
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
    lora: lora_mod.LoRASettings,
    settings: FinetuneSettings,
    dataset: Dataset,
) -> Run:
    torch.manual_seed(settings.seed)
    layers = lora_mod.inject(base.model, lora)
    optimizer = _optimizer(layers, settings)
    return Run(
        base,
        lora,
        settings,
        layers,
        optimizer,
        total_steps(settings, len(dataset.train)),
        data_fingerprint=dataset.fingerprint,
        description=dataset.description,
        data_report=dataset.report,
    )


def _optimizer(
    layers: dict[str, lora_mod.LoRALinear], settings: FinetuneSettings
) -> torch.optim.Optimizer:
    return torch.optim.AdamW(
        lora_mod.lora_parameters(layers),
        lr=settings.lr,
        betas=(0.9, 0.999),
        weight_decay=settings.weight_decay,
    )


def save(run: Run, path: Path) -> None:
    """The checkpoint (atomically): the adapter, the optimiser, where the run is."""
    state = {
        "format": FORMAT,
        "kind": "lora",
        "localchat": __version__,
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
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise TrainError(f"cannot write the checkpoint {path}: {exc.strerror or exc}") from None


def resume(
    path: Path, base: base_mod.BaseModel, settings: FinetuneSettings, dataset: Dataset
) -> Run:
    """Go on from a checkpoint: same base file, same data; ``settings`` may
    add steps or epochs."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("format") != FORMAT or state.get("kind") != "lora":
            raise TrainError(f"{path.name} is not a LoRA checkpoint of this version")
        lora = lora_mod.LoRASettings(
            **{**state["lora"], "targets": tuple(state["lora"]["targets"])}
        )
    except TrainError:
        raise
    except Exception as exc:
        raise TrainError(f"{path} is not a LocalChat checkpoint ({type(exc).__name__})") from None
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
        base,
        lora,
        settings,
        layers,
        optimizer,
        total_steps(settings, len(dataset.train)),
        step=int(state["step"]),
        history=list(state["history"]),
        best_loss=state["best_loss"],
        best_state=state["best_state"],
        evals_since_best=int(state["evals_since_best"]),
        stopped_early=False,
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


@torch.no_grad()
def heldout_loss(run: Run, examples: Sequence[Example], limit: int = 0) -> float:
    """Mean loss per learned token of the held-out examples."""
    chosen = list(examples[:limit] if limit else examples)
    was = run.model.training
    run.model.eval()
    total, count = 0.0, 0
    for i in range(0, len(chosen), run.settings.batch):
        part = chosen[i : i + run.settings.batch]
        total += float(loss_sum(run.model, part, run.device).item())
        count += sum(e.learned for e in part)
    run.model.train(was)
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
    if s.threads:
        torch.set_num_threads(s.threads)
    model = run.model
    order = Order(len(dataset.train), s.seed)
    params = lora_mod.lora_parameters(run.layers)
    if run.first_heldout is None:
        run.first_heldout = heldout_loss(run, dataset.heldout, s.eval_examples)
        run.best_loss = run.first_heldout
        run.best_state = lora_mod.lora_state(run.layers)  # no better one yet: the start
        before = Progress(0, run.total_steps, math.nan, 0.0, 0.0, 0.0, run.first_heldout)
        run.history.append(before.to_dict())
        if on_progress is not None:
            on_progress(before)  # the held-out loss before training: where the curve starts
    model.train()
    start, first, seen = time.perf_counter(), run.step, 0
    while run.step < run.total_steps:
        if should_stop is not None and should_stop():
            break
        lr = schedule(run.step, s.lr, s.warmup, run.total_steps)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        picks = order.take(run.step * s.batch * s.accum, s.batch * s.accum)
        micro = [
            [dataset.train[i] for i in picks[j : j + s.batch]]
            for j in range(0, len(picks), s.batch)
        ]
        learned = max(sum(e.learned for part in micro for e in part), 1)
        run.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for part in micro:
            loss = loss_sum(model, part, run.device) / learned
            loss.backward()
            total += float(loss.item())
            seen += sum(len(e) - 1 for e in part)
        torch.nn.utils.clip_grad_norm_(params, s.grad_clip)
        run.optimizer.step()
        run.step += 1
        elapsed = time.perf_counter() - start
        done = run.step - first
        held = None
        if run.step % s.eval_every == 0 or run.step == run.total_steps:
            held = heldout_loss(run, dataset.heldout, s.eval_examples)
            _judge(run, held)
        progress = Progress(
            run.step,
            run.total_steps,
            total,
            lr,
            seen / elapsed if elapsed > 0 else 0.0,
            (run.total_steps - run.step) * elapsed / done,
            held,
        )
        run.history.append(progress.to_dict())
        if on_progress is not None:
            on_progress(progress)
        if checkpoint is not None and (run.step % s.checkpoint_every == 0 or run.stopped_early):
            save(run, checkpoint)
        if run.stopped_early:
            break
    if checkpoint is not None:
        save(run, checkpoint)
    model.eval()
    return run


def _judge(run: Run, held: float) -> None:
    """Keep the best adapter; stop when ``patience`` evaluations did not beat it."""
    if run.best_loss is None or held < run.best_loss - 1e-4:
        run.best_loss = held
        run.best_state = lora_mod.lora_state(run.layers)
        run.evals_since_best = 0
        return
    run.evals_since_best += 1
    if run.settings.patience and run.evals_since_best >= run.settings.patience:
        run.stopped_early = True


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
