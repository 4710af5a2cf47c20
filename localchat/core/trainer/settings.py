"""The trainer's run settings, each declared once with its :class:`Spec`.

:class:`TrainSettings` (from scratch), :class:`FinetuneSettings` and
:class:`LoRASettings` (a LoRA fine-tune) are frozen dataclasses whose fields
carry a :class:`Spec` (label, help, range, step, choices, the commands whose
command line has them); each is validated against its spec on construction,
with a one-line error. :mod:`.options` builds the CLI flags, the Train
window's form and the command line from them. No PyTorch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from localchat.core.checks import check_scalar
from localchat.core.errors import LocalChatError

Command = Literal["scratch", "lora"]
COMMANDS: tuple[Command, ...] = ("scratch", "lora")


class TrainError(LocalChatError):
    """Training cannot start or go on, and why."""


class AdapterError(LocalChatError):
    """An adapter that cannot be made, read or applied."""


@dataclass(frozen=True)
class Spec:
    """How one option is presented, validated and passed on."""

    label: str
    help: str
    commands: tuple[Command, ...] = ()
    """The commands with this option on their command line (none: only in code)."""
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    """How far one click of a spin box moves (1 for whole numbers by default)."""
    choices: tuple[str, ...] = ()
    """For text (or a tuple of texts): the values it may take (none: any)."""
    special: Mapping[Any, str] = field(default_factory=dict)
    """Values with a meaning of their own, e.g. ``{0: "from the epochs"}``."""
    flag: str | None = None
    """The CLI flag; derived from the name when not given."""
    metavar: str | None = None
    required: bool = False
    """Always on the command line (``--data``, ``--out``, ``--base``)."""
    from_preset: bool = False
    """``train lora``: the preset gives its default (the flag defaults to none)."""
    overridden_by: str | None = None
    """Another option that, when set (not zero), makes this one moot (epochs: steps)."""
    advanced: bool = False
    """A detail a form may keep one click away."""
    cli_choices: bool = True
    """argparse checks the choices (a usage error); else the trainer does, in one line."""
    noun: str | None = None
    """How error messages name it (default: the flag, or the name)."""


def _setting(default: Any, label: str, help: str, **spec: Any) -> Any:
    return field(default=default, metadata={"spec": Spec(label, help, **spec)})


TARGETS: dict[str, str] = {
    # our name (PEFT's q_proj... without the suffix) -> llama.cpp's tensor in each block
    "q": "attn_q",
    "k": "attn_k",
    "v": "attn_v",
    "o": "attn_output",
    "gate": "ffn_gate",
    "up": "ffn_up",
    "down": "ffn_down",
}
"""The matrices a LoRA adapter may adapt."""

S: tuple[Command, ...] = ("scratch",)
L: tuple[Command, ...] = ("lora",)
STEPS = 10_000_000
EVERY = 2**31 - 1
_SEED_HELP = "random seed: the same seed and data give the same run"
_SEED = {"minimum": 0, "maximum": 2**31 - 1, "advanced": True}
_THREADS = {"minimum": 0, "maximum": 1024, "special": {0: "auto"}, "advanced": True}
_THREADS_HELP = "CPU threads for PyTorch (0: its default)"
_LR = {"minimum": 1e-7, "maximum": 1.0, "advanced": True}
_CLIP = {"minimum": 1e-6, "maximum": 1e6}


class _Checked:
    """Validation of a settings dataclass from its fields' specs."""

    error: ClassVar[type[LocalChatError]] = TrainError

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = check_value(
                f.name, f.metadata["spec"], field_kind(f), getattr(self, f.name), self.error
            )
            object.__setattr__(self, f.name, value)


@dataclass(frozen=True)
class TrainSettings(_Checked):
    """How a model is trained from scratch."""

    steps: int = _setting(
        1000, "Steps", "optimiser steps", commands=S, minimum=1, maximum=STEPS, step=100
    )
    batch: int = _setting(
        16, "Batch", "windows per step", commands=S, minimum=1, maximum=4096, advanced=True
    )
    lr: float = _setting(3e-3, "Learning rate", "peak learning rate", commands=S, **_LR)
    warmup: int = _setting(50, "Warmup", "steps of linear warmup", minimum=0, maximum=STEPS)
    weight_decay: float = _setting(
        0.1, "Weight decay", "AdamW's (on the matrices only)", minimum=0.0, maximum=1.0
    )
    grad_clip: float = _setting(1.0, "Gradient clip", "global gradient norm", **_CLIP)
    eval_every: int = _setting(
        100, "Evaluate every", "steps between held-out evaluations", minimum=1, maximum=EVERY
    )
    eval_windows: int = _setting(
        64, "Held-out windows", "at most this many per evaluation", minimum=1, maximum=10**6
    )
    """At most this many held-out windows per evaluation."""
    checkpoint_every: int = _setting(
        200, "Checkpoint every", "steps between checkpoints", minimum=1, maximum=EVERY
    )
    seed: int = _setting(0, "Seed", _SEED_HELP, commands=S, **_SEED)
    threads: int = _setting(0, "CPU threads", _THREADS_HELP, **_THREADS)
    """CPU threads for PyTorch (0: its default)."""

    def lr_at(self, step: int) -> float:
        return schedule(step, self.lr, self.warmup, self.steps)


@dataclass(frozen=True)
class FinetuneSettings(_Checked):
    """How a LoRA fine-tune runs (the adapter's shape is :class:`LoRASettings`)."""

    ctx: int = _setting(
        512,
        "Context",
        "the longest training sequence, in tokens; longer ones are cut",
        commands=L,
        noun="the training context",
        minimum=16,
        maximum=131072,
        step=128,
        advanced=True,
    )
    """The longest sequence trained on, in tokens."""
    batch: int = _setting(
        4,
        "Batch",
        "sequences per micro-batch: more is smoother and needs more memory",
        commands=L,
        minimum=1,
        maximum=256,
        advanced=True,
    )
    accum: int = _setting(
        1,
        "Accumulation",
        "micro-batches per optimiser step",
        commands=L,
        minimum=1,
        maximum=256,
        advanced=True,
    )
    """Gradient accumulation: micro-batches per optimiser step."""
    epochs: float = _setting(
        2.0,
        "Epochs",
        "passes over the training data",
        commands=L,
        minimum=0.01,
        maximum=1000.0,
        step=0.5,
        from_preset=True,
        overridden_by="steps",
        advanced=True,
    )
    steps: int = _setting(
        0,
        "Steps",
        "optimiser steps (instead of the epochs)",
        commands=L,
        minimum=0,
        maximum=STEPS,
        step=50,
        special={0: "from the epochs"},
        advanced=True,
    )
    """Optimiser steps (0: as many as ``epochs`` passes over the data take)."""
    lr: float = _setting(
        2e-4, "Learning rate", "peak learning rate", commands=L, from_preset=True, **_LR
    )
    warmup: int = _setting(10, "Warmup", "steps of linear warmup", minimum=0, maximum=STEPS)
    weight_decay: float = _setting(0.0, "Weight decay", "AdamW's", minimum=0.0, maximum=1.0)
    grad_clip: float = _setting(1.0, "Gradient clip", "global gradient norm", **_CLIP)
    eval_every: int = _setting(
        25,
        "Evaluate every",
        "steps between held-out evaluations",
        commands=L,
        minimum=1,
        maximum=EVERY,
        advanced=True,
    )
    eval_examples: int = _setting(
        64, "Held-out examples", "at most this many per evaluation", minimum=1, maximum=10**6
    )
    """At most this many held-out examples per evaluation."""
    patience: int = _setting(
        3,
        "Patience",
        "evaluations without progress before stopping",
        commands=L,
        minimum=0,
        maximum=10**6,
        special={0: "never stop early"},
        advanced=True,
    )
    """Stop after this many evaluations without a better held-out loss (0: never)."""
    checkpoint_every: int = _setting(
        50, "Checkpoint every", "steps between checkpoints", minimum=1, maximum=EVERY
    )
    seed: int = _setting(0, "Seed", _SEED_HELP, commands=L, **_SEED)
    threads: int = _setting(0, "CPU threads", _THREADS_HELP, **_THREADS)
    dtype: str = _setting(
        "auto",
        "Precision",
        "float32, bfloat16, or auto (float32 where it fits)",
        commands=L,
        choices=("auto", "float32", "bfloat16"),
        advanced=True,
    )
    device: str = _setting(
        "auto",
        "Device",
        "cpu, cuda, or auto (cuda where PyTorch has it)",
        commands=L,
        choices=("auto", "cpu", "cuda"),
        advanced=True,
    )


@dataclass(frozen=True)
class LoRASettings(_Checked):
    """The adapter's shape: ``W x + (alpha / rank) * B (A x)`` on the targets."""

    error: ClassVar[type[LocalChatError]] = AdapterError

    rank: int = _setting(
        16,
        "Rank",
        "the adapter's rank: larger learns more, and is bigger and slower",
        commands=L,
        noun="the LoRA rank",
        minimum=1,
        maximum=512,
        from_preset=True,
        advanced=True,
    )
    alpha: float = _setting(
        32.0,
        "Alpha",
        "LoRA alpha: the update is scaled by alpha/rank (twice the rank unless given)",
        commands=L,
        minimum=0.0,
        maximum=65536.0,
        step=1.0,
        from_preset=True,
        advanced=True,
    )
    dropout: float = _setting(
        0.05,
        "Dropout",
        "LoRA dropout, from 0 up to (not including) 1",
        commands=L,
        noun="the LoRA dropout",
        minimum=0.0,
        maximum=0.99,
        step=0.01,
        advanced=True,
    )
    targets: tuple[str, ...] = _setting(
        tuple(TARGETS),
        "Adapted matrices",
        "the matrices adapted, comma-separated: " + ",".join(TARGETS),
        commands=L,
        choices=tuple(TARGETS),
        cli_choices=False,
        noun="LoRA targets",
        advanced=True,
    )

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


def alpha_for(rank: int) -> float:
    """The alpha that goes with a rank when only the rank is chosen: twice it
    (as in every preset), so the update's scale ``alpha / rank`` stays 2."""
    return 2.0 * rank


def schedule(step: int, lr: float, warmup: int, steps: int) -> float:
    """Linear warmup to ``lr``, then cosine decay to ``lr / 10`` at the last step."""
    if step < warmup:
        return lr * (step + 1) / warmup
    span = max(steps - warmup, 1)
    progress = min((step - warmup) / span, 1.0)
    return lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def settings_specs(cls: type) -> Iterator[tuple[str, Spec]]:
    """Every field of a settings class (on a command line or not) with its spec."""
    for f in dataclasses.fields(cls):
        yield f.name, f.metadata["spec"]


# -- validation ----------------------------------------------------------------------------------


def field_kind(f: dataclasses.Field[Any]) -> type:
    """A settings field's type: int, float, str or tuple (of texts)."""
    return {"float": float, "int": int, "str": str, "tuple[str, ...]": tuple}[str(f.type)]


def check_value(
    name: str, s: Spec, kind: type, value: Any, error: type[LocalChatError] = TrainError
) -> Any:
    """``value`` for the option ``name``, checked against its spec (an int for
    a float is made one); a one-line ``error`` if it does not fit."""
    what = s.noun or s.flag or ("--" + name.replace("_", "-") if s.commands else name)
    if kind is tuple:
        items = tuple(value)
        unknown = [t for t in items if t not in s.choices] if s.choices else []
        if unknown or not items:
            raise error(
                f"{what} are some of {', '.join(s.choices)}"
                + (f" (not {', '.join(unknown)})" if unknown else "")
            )
        return items
    return check_scalar(
        value,
        kind,
        what=what,
        error=error,
        minimum=s.minimum,
        maximum=s.maximum,
        choices=s.choices,
    )
