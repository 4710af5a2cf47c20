"""The one declaration of ``train scratch`` and ``train lora``'s options.

The run settings are declared in :mod:`.settings` (fields with a
:class:`Spec`); the rest of a job (its data, its output, its preset...) here,
as :class:`Option` rows, with the presets (model sizes from scratch,
quick/balanced/thorough for LoRA) and the alpha rule. Everything else derives
from these declarations: the CLI flags (:func:`add_cli_arguments`), the
settings a command line asks for (:func:`scratch_settings`,
:func:`lora_settings`), the Train window's form (:func:`options`) and the
command line it runs (:func:`command_line`).

No PyTorch: the CLI and the window import this module.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from localchat.core.checks import shown
from localchat.core.trainer.settings import (
    COMMANDS,
    AdapterError,
    Command,
    FinetuneSettings,
    LoRASettings,
    Spec,
    TrainError,
    TrainSettings,
    alpha_for,
    check_value,
    field_kind,
    settings_specs,
)

__all__ = [
    "COMMANDS",
    "DEFAULT_BATCH",
    "DEFAULT_CTX",
    "DEFAULT_LORA_PRESET",
    "DEFAULT_MODEL_PRESET",
    "LORA_PRESETS",
    "MODEL_PRESETS",
    "AdapterError",
    "Command",
    "FinetuneSettings",
    "LoRASettings",
    "LoraPreset",
    "Option",
    "Spec",
    "TrainError",
    "TrainSettings",
    "add_cli_arguments",
    "alpha_for",
    "command_line",
    "format_number",
    "lora_settings",
    "option",
    "options",
    "scratch_settings",
    "settings_specs",
]

# -- presets -------------------------------------------------------------------------------------

MODEL_PRESETS: dict[str, dict[str, Any]] = {
    # name: the model's shape from scratch (the vocabulary comes from the tokenizer)
    "tiny": {"n_ctx": 128, "n_embd": 64, "n_layer": 2, "n_head": 4, "n_head_kv": 2, "n_ff": 192},
    "mini": {"n_ctx": 256, "n_embd": 128, "n_layer": 4, "n_head": 4, "n_head_kv": 2, "n_ff": 384},
    "small": {"n_ctx": 512, "n_embd": 256, "n_layer": 6, "n_head": 8, "n_head_kv": 4, "n_ff": 704},
    "base": {
        "n_ctx": 1024,
        "n_embd": 512,
        "n_layer": 8,
        "n_head": 8,
        "n_head_kv": 4,
        "n_ff": 1408,
    },
}
"""``train scratch --preset``: the model sizes."""
DEFAULT_MODEL_PRESET = "mini"


@dataclass(frozen=True)
class LoraPreset:
    """``train lora --preset``: what it sets (the other options keep their defaults)."""

    rank: int
    alpha: float
    epochs: float
    lr: float
    description: str
    """One line for a person choosing it."""

    def values(self) -> dict[str, Any]:
        """The options it sets, by name (``rank``, ``alpha``, ``epochs``, ``lr``)."""
        return {"rank": self.rank, "alpha": self.alpha, "epochs": self.epochs, "lr": self.lr}


LORA_PRESETS: dict[str, LoraPreset] = {
    "quick": LoraPreset(
        8, 16.0, 1.0, 3e-4, "Rank 8, one pass over the data: a first try, the fastest."
    ),
    "balanced": LoraPreset(
        16, 32.0, 2.0, 2e-4, "Rank 16, two passes over the data: a good default."
    ),
    "thorough": LoraPreset(
        32,
        64.0,
        4.0,
        1e-4,
        "Rank 32, four passes over the data: learns the most, takes the longest.",
    ),
}
DEFAULT_LORA_PRESET = "balanced"
DEFAULT_CTX = FinetuneSettings.ctx
"""``train lora``'s training context by default (tokens)."""
DEFAULT_BATCH = FinetuneSettings.batch
"""``train lora``'s sequences per micro-batch by default."""


# -- a command's options -------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One option of a command, as a form shows it and the CLI takes it.

    ``kind`` is ``int``, ``float``, ``str``, ``bool`` (a switch), ``list`` (of
    paths or ids, one or more) or ``tuple`` (some of ``spec.choices``)."""

    name: str
    """The key in a mapping of values, and argparse's ``dest``."""
    kind: type
    default: Any
    """The default (for a ``from_preset`` option: the default preset's value)."""
    spec: Spec
    settings: str = ""
    """The settings class it feeds (``TrainSettings``...), empty for the job's own."""

    @property
    def flag(self) -> str:
        return self.spec.flag or "--" + self.name.replace("_", "-")

    def default_for(self, preset: str | None = None) -> Any:
        """The value it takes when not given, ``preset`` chosen (``train lora``)."""
        if self.spec.from_preset:
            return LORA_PRESETS[preset or DEFAULT_LORA_PRESET].values()[self.name]
        return self.default

    def check(self, value: Any) -> Any:
        """``value`` checked against the spec (a one-line TrainError or AdapterError)."""
        if self.kind in (int, float, str, tuple):
            error = AdapterError if self.settings == "LoRASettings" else TrainError
            return check_value(self.name, self.spec, self.kind, value, error)
        return value


def _job(name: str, kind: type, default: Any, label: str, help: str, **spec: Any) -> Option:
    return Option(name, kind, default, Spec(label, help, **spec))


S: tuple[Command, ...] = ("scratch",)
L: tuple[Command, ...] = ("lora",)
_SCRATCH_FIRST = (
    _job("data", list, [], "Data", "text files/folders", commands=S, metavar="PATH", required=True),
    _job(
        "out",
        str,
        "",
        "Output",
        "where to write it",
        commands=S,
        metavar="MODEL.gguf",
        required=True,
    ),
    _job(
        "preset",
        str,
        DEFAULT_MODEL_PRESET,
        "Size",
        "tiny, mini, small or base",
        commands=S,
        choices=tuple(MODEL_PRESETS),
        cli_choices=False,
    ),
)
_SCRATCH_LAST = (
    _job(
        "vocab",
        int,
        2048,
        "Vocabulary",
        "BPE vocabulary size",
        commands=S,
        minimum=256,
        maximum=1 << 20,
        step=256,
        advanced=True,
    ),
    _job(
        "tokenizer_from",
        str,
        None,
        "Tokenizer from",
        "reuse this model's tokenizer (and chat template) instead of training one",
        commands=S,
        metavar="MODEL.gguf",
        advanced=True,
    ),
    _job(
        "quantize",
        str,
        "f32",
        "Weights",
        "how the weights are written",
        commands=S,
        choices=("f32", "f16", "q8_0"),
        advanced=True,
    ),
    _job(
        "name", str, None, "Name", "the model's name (default: the output's file name)", commands=S
    ),
    _job(
        "license",
        str,
        "",
        "License",
        "written into the model's metadata",
        commands=S,
        advanced=True,
    ),
)
_LORA_FIRST = (
    _job(
        "base",
        str,
        "",
        "Base model",
        "an installed model or .gguf",
        commands=L,
        metavar="MODEL",
        required=True,
    ),
    _job("data", list, [], "Data", "text files/folders, chat .jsonl", commands=L, metavar="PATH"),
    _job(
        "chats",
        list,
        None,
        "Chats",
        "train on these chats from the chat store ('all' for every chat)",
        commands=L,
        metavar="ID",
    ),
    _job(
        "out",
        str,
        "",
        "Output",
        "where to write it",
        commands=L,
        metavar="ADAPTER.gguf",
        required=True,
    ),
    _job(
        "preset",
        str,
        DEFAULT_LORA_PRESET,
        "Preset",
        "quick (rank 8, 1 epoch), balanced (rank 16, 2 epochs) or thorough "
        "(rank 32, 4 epochs); the options below override it",
        commands=L,
        choices=tuple(LORA_PRESETS),
    ),
)
_LORA_LAST = (
    _job(
        "name",
        str,
        None,
        "Name",
        "the adapter's name (default: the output's file name)",
        commands=L,
    ),
)
_BOTH_LAST = (
    _job("restart", bool, False, "Start over", "ignore an existing checkpoint", commands=COMMANDS),
    _job("json", bool, False, "JSON", "a JSON line per step on stdout", commands=COMMANDS),
)


def _settings_options(cls: type, command: Command) -> Iterator[Option]:
    for f in dataclasses.fields(cls):
        s: Spec = f.metadata["spec"]
        if command in s.commands:
            yield Option(f.name, field_kind(f), f.default, s, cls.__name__)


def options(command: Command) -> list[Option]:
    """Every option of ``train <command>``, in the order of its ``--help``."""
    if command == "scratch":
        settings = [*_settings_options(TrainSettings, "scratch")]
        return [*_SCRATCH_FIRST, *settings, *_SCRATCH_LAST, *_BOTH_LAST]
    if command == "lora":
        settings = [
            *_settings_options(LoRASettings, "lora"),
            *_settings_options(FinetuneSettings, "lora"),
        ]
        return [*_LORA_FIRST, *settings, *_LORA_LAST, *_BOTH_LAST]
    raise ValueError(f"no command {command!r}")


def option(command: Command, name: str) -> Option:
    """The option ``name`` of ``train <command>`` (KeyError if it has none)."""
    for o in options(command):
        if o.name == name:
            return o
    raise KeyError(f"train {command} has no option {name!r}")


# -- the command line ----------------------------------------------------------------------------

format_number = shown
"""A number as a person writes it: 2e-4, 2.5e-5, 0.5, 16."""


def add_cli_arguments(
    parser: argparse.ArgumentParser, command: Command, only: Sequence[str] = ()
) -> None:
    """The flags of ``train <command>`` (or ``only`` those named), with their
    range and default in the help."""
    for o in options(command):
        if only and o.name not in only:
            continue
        s = o.spec
        parts = [s.help]
        if s.minimum is not None and s.maximum is not None and o.kind in (int, float):
            default = "default: the preset's" if s.from_preset else f"default {shown(o.default)}"
            parts.append(f"({shown(s.minimum)}..{shown(s.maximum)}; {default})")
        elif o.kind is str and o.default:
            parts.append(f"(default {o.default})")
        elif o.kind is tuple:
            parts.append("(all)")
        help_text = " ".join(parts).replace("%", "%%")
        if o.kind is bool:
            parser.add_argument(o.flag, dest=o.name, action="store_true", help=help_text)
            continue
        kwargs: dict[str, Any] = {"dest": o.name, "help": help_text}
        if s.metavar:
            kwargs["metavar"] = s.metavar
        if s.required:
            kwargs["required"] = True
        if o.kind is list:
            kwargs.update(nargs="+", default=o.default)
        elif o.kind is tuple:
            kwargs.update(type=str, default=None)
        else:
            kwargs.update(type=o.kind, default=None if s.from_preset else o.default)
            if s.choices and s.cli_choices:
                kwargs["choices"] = s.choices
        parser.add_argument(o.flag, **kwargs)


def scratch_settings(values: Mapping[str, Any]) -> TrainSettings:
    """The run settings ``train scratch`` uses for ``values`` (by option name;
    missing ones take their defaults): the warmup, the evaluations and the
    checkpoints follow the number of steps."""
    given = {
        o.name: values[o.name]
        for o in _settings_options(TrainSettings, "scratch")
        if values.get(o.name) is not None
    }
    steps = TrainSettings(**given).steps
    every = max(steps // 10, 1)
    derived = {"warmup": min(100, max(steps // 20, 1)), "eval_every": every}
    return TrainSettings(**given, **derived, checkpoint_every=every)


def lora_settings(values: Mapping[str, Any]) -> tuple[LoRASettings, FinetuneSettings]:
    """The adapter and run settings ``train lora`` uses for ``values`` (by
    option name; missing or ``None``: the preset's, else the default). A rank
    given without an alpha gets :func:`alpha_for` it; ``targets`` may be the
    flag's comma-separated text."""
    preset = values.get("preset") or DEFAULT_LORA_PRESET
    if preset not in LORA_PRESETS:
        raise TrainError(f"no preset {preset!r}; choose one of {', '.join(LORA_PRESETS)}")
    chosen = {k: v for k, v in values.items() if v is not None}
    if "rank" in chosen and "alpha" not in chosen:
        chosen["alpha"] = alpha_for(int(chosen["rank"]))
    if chosen.get("eval_every") == 0:
        del chosen["eval_every"]  # 0: the default (what --eval-every 0 always meant)
    if isinstance(chosen.get("targets"), str):
        chosen["targets"] = tuple(t.strip() for t in chosen["targets"].split(",") if t.strip())
    merged = {**LORA_PRESETS[preset].values(), **chosen}
    lora = LoRASettings(**{n: merged[n] for n, _ in settings_specs(LoRASettings) if n in merged})
    run = FinetuneSettings(
        **{n: merged[n] for n, _ in settings_specs(FinetuneSettings) if n in merged}
    )
    return lora, run


def command_line(command: Command, values: Mapping[str, Any], *, json: bool = True) -> list[str]:
    """The arguments of ``localchat`` that run ``train <command>`` with
    ``values`` (by option name, e.g. ``{"data": [...], "out": ..., "steps":
    500}``): ``["train", command, "--json", ...]``. Options missing, ``None``
    or at their default (the preset's, for ``train lora``) are left out, and
    so is one made moot by another (the epochs when steps are given);
    required ones must be given. Values are checked against their specs
    (a one-line TrainError or AdapterError)."""
    known = options(command)
    unknown = sorted(set(values) - {o.name for o in known})
    if unknown:
        raise TrainError(f"train {command} has no option {unknown[0]!r}")
    args = ["train", command]
    if json or values.get("json"):
        args.append("--json")
    preset = values.get("preset")
    # An alpha left out follows the rank (alpha_for) once the rank is not the
    # preset's: then an alpha equal to the preset's must still be said.
    rank = values.get("rank")
    rank_moved = (
        command == "lora"
        and rank is not None
        and not _same(rank, option("lora", "rank").default_for(preset))
    )
    for o in known:
        value = values.get(o.name)
        if o.spec.required and (value is None or value == "" or value == []):
            raise TrainError(f"train {command} needs {o.flag}")
        if o.name == "json" or value is None:
            continue
        if o.spec.overridden_by and values.get(o.spec.overridden_by):
            continue
        if o.kind is bool or o.kind is list:
            if value:
                args += [o.flag] if o.kind is bool else [o.flag, *(str(v) for v in value)]
            continue
        if o.kind is not str or o.spec.choices:
            value = o.check(value)
        said = o.name == "alpha" and rank_moved
        if not o.spec.required and not said and _same(value, o.default_for(preset)):
            continue
        if o.kind is tuple:
            args += [o.flag, ",".join(value)]
        else:
            args += [o.flag, shown(value) if isinstance(value, float) else str(value)]
    return args


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b)
