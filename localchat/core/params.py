"""The one declaration of generation settings.

Each setting is declared once, as a field of :class:`GenerationSettings` with a
:class:`Spec` (label, help, range, the llama.cpp argument it feeds). Everything
else is derived from these declarations: validation (on construction), the CLI
flags (:func:`add_cli_arguments`), storage (:meth:`GenerationSettings.to_dict` /
:meth:`GenerationSettings.from_dict`), the settings form (issue 3) and the
backend call (the worker builds llama.cpp's arguments from ``Spec.llama_arg``).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from localchat.core.checks import check_scalar
from localchat.core.errors import SettingError

Group = Literal["sampling", "model", "prompt", "conversation", "thinking"]

CTX_MULTIPLE = 256
"""Context sizes are multiples of this (llama-cpp-python mis-sizes its token
buffer otherwise)."""


def effective_ctx(requested: int, trained: int) -> int:
    """The context size a model is run with: the setting capped at the context
    the model was trained for and rounded down to a multiple of 256 (never
    below 256)."""
    n = min(requested, trained) if trained > 0 else requested
    return max(CTX_MULTIPLE, n // CTX_MULTIPLE * CTX_MULTIPLE)


@dataclass(frozen=True)
class Spec:
    """How one setting is presented, validated and passed on."""

    label: str
    help: str
    group: Group
    minimum: float | None = None
    maximum: float | None = None
    special: Mapping[Any, str] = field(default_factory=dict)
    """Values with a meaning of their own, e.g. ``{-1: "random"}`` for the seed."""
    llama_arg: str | None = None
    """The keyword this setting feeds in llama-cpp-python (load or sampling call)."""
    flag: str | None = None
    """The CLI flag; derived from the name when not given."""
    step: float | None = None
    """How far one click of a spin box moves (1 for whole numbers by default)."""
    choices: tuple[str, ...] = ()
    """For a text setting: the values it may take (none: any text)."""
    choice_labels: Mapping[str, str] = field(default_factory=dict)
    """How the settings form words each choice (the stored value and the CLI's
    stay the value itself), e.g. ``{"stop": "Stop and say so"}``."""
    only_for: str | None = None
    """A capability the loaded model must have for this setting to apply (the
    form shows it only then): "thinking" (any reasoning model),
    "thinking_switch", "reasoning_effort"."""


def _setting(default: Any, **spec: Any) -> Any:
    return field(default=default, metadata={"spec": Spec(**spec)})


@dataclass(frozen=True)
class GenerationSettings:
    """Every knob of a generation, validated on construction."""

    temperature: float = _setting(
        0.7,
        label="Temperature",
        step=0.05,
        help="Randomness of the reply: 0 always picks the most likely token, higher is more "
        "varied.",
        group="sampling",
        minimum=0.0,
        maximum=2.0,
        special={0.0: "greedy"},
        llama_arg="temp",
    )
    top_k: int = _setting(
        40,
        label="Top-k",
        help="Sample only from the k most likely tokens (0 = no limit).",
        group="sampling",
        minimum=0,
        maximum=1000,
        special={0: "off"},
        llama_arg="top_k",
    )
    top_p: float = _setting(
        0.95,
        label="Top-p",
        step=0.01,
        help="Sample only from the most likely tokens whose probabilities add up to p (1 = off).",
        group="sampling",
        minimum=0.0,
        maximum=1.0,
        llama_arg="top_p",
    )
    min_p: float = _setting(
        0.05,
        label="Min-p",
        step=0.01,
        help="Drop tokens less likely than this fraction of the most likely one (0 = off).",
        group="sampling",
        minimum=0.0,
        maximum=1.0,
        llama_arg="min_p",
    )
    repeat_penalty: float = _setting(
        1.1,
        label="Repeat penalty",
        step=0.01,
        help="Discourage repeating recent tokens (1 = off).",
        group="sampling",
        minimum=1.0,
        maximum=2.0,
        llama_arg="repeat_penalty",
    )
    seed: int = _setting(
        -1,
        label="Seed",
        help="Random seed; the same seed, prompt and settings give the same reply (-1 = random).",
        group="sampling",
        minimum=-1,
        maximum=2**31 - 1,
        special={-1: "random"},
        llama_arg="seed",
    )
    max_tokens: int = _setting(
        1024,
        label="Max reply tokens",
        help="Longest reply, in tokens; a reply also ends when the context is full.",
        group="sampling",
        minimum=1,
        maximum=131072,
    )
    ctx: int = _setting(
        4096,
        label="Context size",
        step=CTX_MULTIPLE,
        help="Tokens the model sees at once (prompt and reply). Rounded down to a multiple "
        "of 256 and capped at what the model was trained for; more costs RAM.",
        group="model",
        minimum=CTX_MULTIPLE,
        maximum=1048576,
        llama_arg="n_ctx",
    )
    gpu_layers: int = _setting(
        -1,
        label="GPU layers",
        help="Layers to run on the GPU (0 = none, -1 = all). Falls back to the CPU when "
        "the GPU cannot take them.",
        group="model",
        minimum=-1,
        maximum=1000,
        special={-1: "all", 0: "none"},
        llama_arg="n_gpu_layers",
    )
    threads: int = _setting(
        0,
        label="CPU threads",
        help="Threads for the CPU part of the work (0 = one per physical core).",
        group="model",
        minimum=0,
        maximum=512,
        special={0: "auto"},
        llama_arg="n_threads",
    )
    lora_scale: float = _setting(
        1.0,
        label="Adapter strength",
        step=0.05,
        help="How strongly a LoRA adapter changes the model (0 = not at all, 1 = as trained).",
        group="model",
        minimum=0.0,
        maximum=4.0,
    )
    system_prompt: str = _setting(
        "",
        label="System prompt",
        help="Instructions the model sees before the conversation.",
        group="prompt",
        flag="--system",
    )
    overflow: str = _setting(
        "rolling",
        label="When the chat is too long",
        help="rolling: older messages drop out of the model's view (never the system "
        "prompt); keep-start: the first exchange stays too; stop: refuse and say how much "
        "too long it is. Messages stay in the chat either way.",
        group="conversation",
        choices=("rolling", "keep-start", "stop"),
        choice_labels={
            "rolling": "Forget the oldest messages",
            "keep-start": "Keep the first exchange, forget the next oldest",
            "stop": "Stop and say so",
        },
    )

    thinking: str = _setting(
        "auto",
        label="Thinking",
        help="Whether a reasoning model thinks before it answers: auto leaves it to the "
        "model's template, on and off ask for it (the model may not obey).",
        group="thinking",
        choices=("auto", "on", "off"),
        choice_labels={
            "auto": "As the model does by default",
            "on": "Think before answering",
            "off": "Answer directly",
        },
        only_for="thinking_switch",
    )
    reasoning_effort: str = _setting(
        "medium",
        label="Reasoning effort",
        help="How hard a model with effort levels (gpt-oss) thinks: low is quick, high thorough.",
        group="thinking",
        choices=("low", "medium", "high"),
        only_for="reasoning_effort",
    )
    thinking_budget: int = _setting(
        0,
        label="Thinking budget",
        help="Most tokens a reasoning model may think for; then LocalChat ends the "
        "thinking and the model answers (0 = no limit).",
        group="thinking",
        minimum=0,
        maximum=131072,
        special={0: "no limit"},
        only_for="thinking",
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _check(f, getattr(self, f.name)))

    # -- derived views -----------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, strict: bool = True) -> GenerationSettings:
        """Build from stored values. Unknown keys are an error when ``strict``,
        else ignored (settings saved by a newer version)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown and strict:
            raise SettingError(f"unknown setting {unknown[0]!r}")
        return cls(**{k: v for k, v in data.items() if k in known})

    def replace(self, **changes: Any) -> GenerationSettings:
        return self.from_dict({**self.to_dict(), **changes})

    def llama_args(self, group: Group) -> dict[str, Any]:
        """The llama-cpp-python keywords this group of settings feeds."""
        return {
            spec.llama_arg: getattr(self, name)
            for name, spec in specs()
            if spec.group == group and spec.llama_arg
        }


def specs() -> Iterator[tuple[str, Spec]]:
    """Every setting's name and spec, in declaration order."""
    for f in dataclasses.fields(GenerationSettings):
        yield f.name, f.metadata["spec"]


def spec(name: str) -> Spec:
    return dict(specs())[name]


def choice_label(name: str, value: str) -> str:
    """How the settings form words a choice (the value itself when it has no words)."""
    return spec(name).choice_labels.get(value, value)


def default(name: str) -> Any:
    return getattr(GenerationSettings(), name)


def _kind(f: dataclasses.Field[Any]) -> type:
    return {"float": float, "int": int, "str": str}[str(f.type)]


def _check(f: dataclasses.Field[Any], value: Any) -> Any:
    s: Spec = f.metadata["spec"]
    return check_scalar(
        value,
        _kind(f),
        what=f.name,
        error=SettingError,
        minimum=s.minimum,
        maximum=s.maximum,
        choices=s.choices,
    )


# -- CLI ---------------------------------------------------------------------


def cli_flag(name: str) -> str:
    s = spec(name)
    return s.flag or "--" + name.replace("_", "-")


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per setting, with its range and default in the help text.

    Flags default to ``None`` so that :func:`from_cli` changes only what was
    given on the command line."""
    for f in dataclasses.fields(GenerationSettings):
        s: Spec = f.metadata["spec"]
        kind = _kind(f)
        parts = [s.help]
        if s.minimum is not None and s.maximum is not None:
            parts.append(f"Range {s.minimum:g}..{s.maximum:g}.")
        if f.default != "":
            parts.append(f"Default {f.default}.")
        parser.add_argument(
            cli_flag(f.name),
            dest=f.name,
            type=kind,
            default=None,
            choices=s.choices or None,
            metavar=None if s.choices else {float: "F", int: "N", str: "TEXT"}[kind],
            help=" ".join(parts).replace("%", "%%"),
        )


def from_cli(
    args: argparse.Namespace, base: GenerationSettings | None = None
) -> GenerationSettings:
    base = base or GenerationSettings()
    changes = {
        name: getattr(args, name) for name, _ in specs() if getattr(args, name, None) is not None
    }
    return base.replace(**changes) if changes else base
