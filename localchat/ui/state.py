"""What the main window shows, as plain objects the widgets subscribe to: the
model the chat talks to (``ModelState``), the open chat (``ChatState``) and
the API server the window runs (``ServerState``).

No Qt and no widgets here: a change is an ``Event`` (``core.events``), and
each widget that draws the state connects to it. The state is changed on the
GUI thread only (background jobs report by signal; a slot applies).
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localchat.core import params
from localchat.core.engine.gguf_info import ModelInfo
from localchat.core.engine.protocol import ContextReport, LoadedModel
from localchat.core.events import Event
from localchat.core.params import GenerationSettings

if TYPE_CHECKING:  # the server is imported when it first starts
    from localchat.server.app import RequestRecord


def model_part(settings: GenerationSettings) -> dict[str, Any]:
    """The settings that take effect only when a model is loaded."""
    return {k: v for k, v in settings.to_dict().items() if params.spec(k).group == "model"}


class ModelState:
    """The model chosen for the open chat (with its adapter), whether it is
    loaded, and the line the model bar shows about it."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.adapter: Path | None = None
        """The LoRA adapter chosen for the current chat (None when it is off)."""
        self.loaded: LoadedModel | None = None
        self.info: ModelInfo | None = None
        """The last loaded model's header (what its memory note is computed from)."""
        self.loaded_with: dict[str, Any] = {}
        """The settings that apply on loading, as the model was (or is being) loaded."""
        self.adapter_bases: dict[str, str] = {}
        """Adapter -> the listed model it fits (from the picker's survey)."""
        self.status = ""
        self.tip = ""
        self.chosen: Event[None] = Event()
        """The model or the adapter changed (a load begins, or the adapter was refused)."""
        self.said: Event[None] = Event()
        """``status`` changed."""
        self.ready: Event[None] = Event()
        """A model is loaded (``loaded`` and ``info`` are set)."""

    def choose(self, path: Path | None, adapter: Path | None) -> None:
        self.path, self.adapter, self.loaded = path, adapter, None
        self.chosen.emit(None)

    def say(self, text: str, tip: str | None = None) -> None:
        self.status, self.tip = text, text if tip is None else tip
        self.said.emit(None)

    def name(self) -> str:
        """Who replies, as the chat records it: the model (and its adapter)."""
        if self.path is None:
            return "no model"
        if self.adapter is not None and self.loaded is not None and self.loaded.lora:
            return f"{self.path.stem} + {self.adapter.stem}"
        return self.path.stem

    def stale(self, values: GenerationSettings) -> bool:
        """Whether a setting that applies on loading differs from the loaded
        model's (the adapter's strength only counts with an adapter)."""
        if self.path is None:
            return False
        now, loaded = model_part(values), dict(self.loaded_with)
        if self.adapter is None:
            now.pop("lora_scale", None)
            loaded.pop("lora_scale", None)
        return now != loaded


class ChatState:
    """The open chat, whether a reply is being written, and what the chat's
    next prompt costs."""

    def __init__(self) -> None:
        self.id: int | None = None
        self.replying = False
        """From a reply's start until its end reaches the GUI thread (its thread
        may still be returning then)."""
        self.context: ContextReport | None = None
        self.outside: set[int] = set()
        """The messages the last count left out of the model's view."""
        self.reply_changed: Event[bool] = Event()
        self.counted: Event[ContextReport | None] = Event()
        """A new count (None: nothing to count, or no count now)."""

    def set_replying(self, replying: bool) -> None:
        self.replying = replying
        self.reply_changed.emit(replying)

    def set_context(self, report: ContextReport | None, outside: set[int] | None = None) -> None:
        self.context, self.outside = report, outside or set()
        self.counted.emit(report)


class ServerState:
    """The window's API server: where it is in its life (``phase``: "off",
    "starting", "on", "stopping" or "failed"), the address it serves, why it
    failed (one line), and the last ``KEPT`` requests, oldest first."""

    KEPT = 500

    def __init__(self) -> None:
        self.phase = "off"
        self.address = ""
        self.error = ""
        self.records: deque[RequestRecord] = deque(maxlen=self.KEPT)
        self.changed: Event[None] = Event()
        """``phase``, ``address`` or ``error`` changed."""
        self.logged: Event[RequestRecord] = Event()
        """A request was served (it is last in ``records``; the first went if full)."""

    def set(self, phase: str, address: str = "", error: str = "") -> None:
        self.phase, self.address, self.error = phase, address, error
        self.changed.emit(None)

    def log(self, record: RequestRecord) -> None:
        self.records.append(record)
        self.logged.emit(record)

    def summary(self) -> str:
        """What the status bar says ("" while off)."""
        if self.phase == "on":
            return f"API on {self.address}"
        if self.phase == "starting":
            return "Starting the API server…"
        if self.phase == "stopping":
            return "Stopping the API server…"
        if self.phase == "failed":
            return f"API server: {self.error}"
        return ""
