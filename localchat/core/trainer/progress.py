"""The trainer's progress lines: what ``localchat train ... --json`` prints.

One JSON object per line on stdout, of three kinds:

- a step, :class:`Progress`: ``{"step", "steps", "loss", "lr", "tokens_per_s",
  "eta_s", "heldout_loss"}`` (a loss not measured is ``null``; a fine-tune's
  step 0 carries only the held-out loss before training);
- ``{"info": "one line"}``: what the trainer says before it starts (memory,
  data, resuming);
- ``{"done": {...}}``: the summary at the end, :class:`ScratchSummary` or
  :class:`LoraSummary`.

Both trainers write them with :meth:`Progress.to_json`, :func:`info_line`
and :func:`done_line`; the Train window reads them with :func:`parse_line`.
No PyTorch.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any, TypedDict

INFO = "info"
DONE = "done"


@dataclass
class Progress:
    """One optimiser step done (or, at step 0, the held-out loss before training)."""

    step: int
    """Steps done."""
    steps: int
    loss: float
    """The step's training loss (NaN when not measured: step 0)."""
    lr: float
    tokens_per_s: float
    eta_s: float
    heldout_loss: float | None = None
    """Measured at this step (None: not this step)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: a loss not measured (NaN) is None."""
        return {
            k: (None if math.isnan(v) else round(v, 6)) if isinstance(v, float) else v
            for k, v in asdict(self).items()
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Progress:
        """From :meth:`to_dict`'s keys (a loss of None is NaN)."""

        def number(key: str) -> float:
            value = data.get(key)
            return math.nan if value is None else float(value)

        held = data.get("heldout_loss")
        return cls(
            step=int(data["step"]),
            steps=int(data["steps"]),
            loss=number("loss"),
            lr=number("lr"),
            tokens_per_s=number("tokens_per_s"),
            eta_s=number("eta_s"),
            heldout_loss=None if held is None else float(held),
        )


@dataclass(frozen=True)
class Info:
    """A line the trainer says before it starts."""

    text: str


@dataclass(frozen=True)
class Done:
    """The run's summary (a :class:`ScratchSummary` or a :class:`LoraSummary`)."""

    summary: dict[str, Any]


Event = Progress | Info | Done


class ScratchSummary(TypedDict):
    """``train scratch``'s summary."""

    model: str
    checkpoint: str
    steps: int
    parameters: int
    vocab: int
    heldout_loss: float
    heldout_perplexity: float
    data: list[str]


class LoraSummary(TypedDict):
    """``train lora``'s summary."""

    adapter: str
    base: str
    checkpoint: str
    steps: int
    stopped_early: bool
    rank: int
    alpha: float
    heldout_loss_before: float | None
    heldout_loss_after: float | None
    perplexity_before: float
    perplexity_after: float
    heldout_tokens: int
    data: dict[str, Any]


def info_line(text: str) -> str:
    return json.dumps({INFO: text}, ensure_ascii=False)


def done_line(summary: ScratchSummary | LoraSummary | dict[str, Any]) -> str:
    return json.dumps({DONE: summary}, ensure_ascii=False)


def parse_line(line: str) -> Event | None:
    """The event a line of ``--json`` output carries; None for anything else
    (a blank line, a line that is not one of ours)."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if not isinstance(event, dict):
        return None
    if DONE in event:
        return Done(dict(event[DONE]) if isinstance(event[DONE], dict) else {})
    if INFO in event:
        return Info(str(event[INFO]))
    if "step" in event and "steps" in event:
        try:
            return Progress.from_dict(event)
        except (TypeError, ValueError):
            return None
    return None
