"""What the main window shows, as plain objects the widgets subscribe to: the
model the chat talks to (``ModelState``), the open chat (``ChatState``), the
API server the window runs (``ServerState``) and the document collections
with their indexing (``DocumentsState``).

No Qt and no widgets here: a change is an ``Event`` (``core.events``), and
each widget that draws the state connects to it. The state is changed on the
GUI thread only (background jobs report by signal; a slot applies).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localchat.core import params
from localchat.core.engine.gguf_info import ModelInfo
from localchat.core.engine.protocol import ContextReport, LoadedModel
from localchat.core.events import Event
from localchat.core.params import GenerationSettings

if TYPE_CHECKING:  # the server is imported when it first starts, the index when first used
    from localchat.core.documents.indexer import Progress
    from localchat.core.documents.store import Collection
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
        self._id: int | None = None
        self.opened: Event[int | None] = Event()
        """Another chat is open (None: none, the next message makes one)."""
        self.replying = False
        """From a reply's start until its end reaches the GUI thread (its thread
        may still be returning then)."""
        self.context: ContextReport | None = None
        self.outside: set[int] = set()
        """The messages the last count left out of the model's view."""
        self.reply_changed: Event[bool] = Event()
        self.counted: Event[ContextReport | None] = Event()
        """A new count (None: nothing to count, or no count now)."""

    @property
    def id(self) -> int | None:
        return self._id

    @id.setter
    def id(self, chat_id: int | None) -> None:
        if chat_id != self._id:
            self._id = chat_id
            self.opened.emit(chat_id)

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


@dataclass(frozen=True)
class IndexTask:
    """What the indexing is doing: ``action`` ("add", "update" or "remove")
    on collection ``name``, how far it got (None before the first file), and
    whether Stop was asked (it ends after the file being read). ``quiet``: the
    folder watch's update, which the status bar mentions only if it changed
    something."""

    action: str
    name: str
    progress: Progress | None = None
    stopping: bool = False
    quiet: bool = False


class DocumentsState:
    """The document collections (``collections``, as last listed), the
    indexing task under way (``task``), the collections waiting for theirs
    (``waiting``), and whether indexing is paused (the task under way and
    those after it wait until Resume)."""

    def __init__(self) -> None:
        self.collections: list[Collection] = []
        self.task: IndexTask | None = None
        self.waiting: list[str] = []
        self.paused = False
        self.listed: Event[None] = Event()
        """``collections`` changed."""
        self.working: Event[None] = Event()
        """``task``, ``waiting`` or ``paused`` changed."""

    def set_collections(self, collections: list[Collection]) -> None:
        self.collections = list(collections)
        self.listed.emit(None)

    def set_work(
        self,
        task: IndexTask | None,
        waiting: list[str] | None = None,
        *,
        paused: bool | None = None,
    ) -> None:
        self.task = task
        if waiting is not None:
            self.waiting = list(waiting)
        if paused is not None:
            self.paused = paused
        self.working.emit(None)

    def names(self) -> list[str]:
        return [c.name for c in self.collections]

    def find(self, name: str) -> Collection | None:
        return next((c for c in self.collections if c.name == name), None)

    def busy_with(self, name: str) -> bool:
        """Whether ``name`` is being indexed (or removed) or waits to be."""
        return (self.task is not None and self.task.name == name) or name in self.waiting
