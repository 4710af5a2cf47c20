"""Loading the model the open chat talks to, and each chat's adapter choice.

A load runs on a job, one at a time: while one runs, the last one asked for
follows it, and the answer of one that was followed is dropped (``LatestJobs``).
The answer lands in ``ModelState`` on the GUI thread. A chat remembers its
adapter (and its strength) in the store; opening the chat asks for them again.
A chat without an adapter asks for the model its last reply was written with,
when that one is installed (else the current model stays, and a line says so).

While the window's API server runs, a load (and an unload) takes its turn
with the server's requests; a model the server loads for a request is shown
as loaded here (``adopt``), as one loaded here would be.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal

from localchat.core.chat.store import ChatStore
from localchat.core.engine.client import Engine
from localchat.core.engine.gguf_info import ModelInfo, read_model_info
from localchat.core.engine.protocol import LoadedModel
from localchat.core.errors import LocalChatError, ModelFileError
from localchat.core.models import library
from localchat.core.models.matching import chat_adapter, model_named
from localchat.core.params import GenerationSettings
from localchat.core.settings import AppSettings
from localchat.ui.bridge import Background, Emit, LatestJobs
from localchat.ui.state import ChatState, ModelState, model_part

if TYPE_CHECKING:
    from localchat.ui.local_server import Turn

Loaded = tuple[LoadedModel, ModelInfo, str]
"""The loaded model, its header, and why its adapter was refused ("" if it was not)."""


def _load(
    engine: Engine,
    path: Path,
    adapter: Path | None,
    settings: GenerationSettings,
    turn: Turn,
    _emit: Emit,
) -> Loaded:
    """Off the GUI thread, in the engine's turn: load, falling back to the
    model alone when the adapter is refused (trained on another file, or
    llama.cpp would not take it): the model itself stays usable."""
    refused = ""
    with turn():
        try:
            loaded = engine.load(path, settings, lora=adapter)
        except LocalChatError as exc:
            if adapter is None:
                raise
            refused = str(exc)
            loaded = engine.load(path, settings)
    return loaded, read_model_info(path), refused


class ModelLoader(QObject):
    """``load`` a model (and adapter) for the open chat; ``for_chat`` loads what
    the chat asks for; ``remember`` stores the chat's choice."""

    shown = Signal(object)
    """The settings a load uses (GenerationSettings), for the form to show."""
    message = Signal(str, int)
    """A line for the status bar, and how long it stays (ms)."""
    kept = Signal()
    """What the chat asks for is loaded (or loading) already: the picker shows it."""

    def __init__(
        self,
        engine: Engine,
        store: ChatStore,
        settings: AppSettings,
        model: ModelState,
        chat: ChatState,
        values: Callable[[], GenerationSettings],
        background: Background,
        parent: QObject | None = None,
        models: Callable[[], list[Path]] | None = None,
        turn: Turn | None = None,
    ) -> None:
        """``models``: the models that can be loaded (by default the installed
        ones, the bundled demo and the one in use); ``turn``: how a load holds
        the engine (the API server's turn while it runs)."""
        super().__init__(parent)
        self._turn = turn or contextlib.nullcontext
        self._models = models or self._listed
        self.engine, self.store, self.settings = engine, store, settings
        self.model, self.chat, self._values, self._background = model, chat, values, background
        self.jobs = LatestJobs(self, one_at_a_time=True)
        self.jobs.done.connect(self._loaded)
        self.jobs.failed.connect(lambda message: model.say(f"Failed: {message}"))

    @property
    def loading(self) -> bool:
        return self.jobs.running

    def load(self, path: Path, adapter: Path | None = None, scale: float | None = None) -> None:
        """Load in the background (with ``adapter``, at ``scale`` when given, else
        at the model's Adapter strength); the conversation is untouched. While
        a load runs, the last one asked for follows it."""
        self.settings.set_ui("last_model", str(path))
        settings = self.settings.generation(str(path))
        if scale is not None:
            settings = dataclasses.replace(settings, lora_scale=float(scale))
        self.model.loaded_with = model_part(settings)
        self.shown.emit(settings)
        self.model.choose(path, adapter)
        self.model.say(f"Loading with the adapter {adapter.stem}…" if adapter else "Loading…")
        engine, turn = self.engine, self._turn
        self.jobs.request(lambda: lambda emit: _load(engine, path, adapter, settings, turn, emit))

    def adopt(self, path: Path, loaded: LoadedModel, info: ModelInfo) -> None:
        """The API server loaded ``path`` for a request: show it as the loaded
        model, with its settings, as a load chosen here would show (it is not
        remembered as the user's choice). Not when a load of the window's is
        under way (it comes after, and wins) or the engine has moved on."""
        now = self.engine.loaded
        if self.loading or now is None or now.path != loaded.path:
            return
        settings = self.settings.generation(str(path))
        self.model.loaded_with = model_part(settings)
        self.shown.emit(settings)
        self.model.choose(path, None)
        self._loaded((loaded, info, ""), by=" · loaded for the API server")

    def _loaded(self, result: Loaded, by: str = "") -> None:
        loaded, info, refused = result
        model = self.model
        model.info = info
        note = f" — {loaded.notice}" if loaded.notice else ""
        if library.is_demo(loaded.path):
            note += " · demo model"
        if refused:
            model.choose(model.path, None)
            note += " · without the adapter"
            self.message.emit(f"Adapter refused: {refused}", 20000)
        elif loaded.lora:
            note += f" · adapter ×{self._values().lora_scale:.2f}"
        model.loaded = loaded
        text = f"Ready · context {loaded.n_ctx:,} · {loaded.backend}{note}{by}"
        model.say(text, f"Adapter refused: {refused}" if refused else None)
        model.ready.emit(None)

    def release(self, path: Path) -> Callable[[], None]:
        """Before a model is deleted, on the GUI thread (where this state is
        written): refuses while a reply or a load uses it, else returns what
        lets the engine go of it, to run off the GUI thread with the deletion."""
        if self.model.path is None or self.model.path != path:
            return lambda: None
        if self.chat.replying or self.loading:
            raise ModelFileError(
                f"{path.stem} is in use: wait for the reply (or stop it), then delete it"
            )
        engine, turn = self.engine, self._turn

        def unload() -> None:
            with turn():
                engine.unload()

        return unload

    # -- each chat's adapter ------------------------------------------------------------

    def choose(self, path: str, adapter: str | None) -> None:
        """A row of the picker chosen: a model, or a model with an adapter; the
        chat remembers the choice."""
        scale = self.chat_scale() if adapter else None
        self.load(Path(path), Path(adapter) if adapter else None, scale)
        self.remember()

    def chat_scale(self) -> float | None:
        if self.chat.id is None:
            return None
        value = self.store.chat_settings(self.chat.id).get("lora_scale")
        return float(value) if isinstance(value, int | float) else None

    def for_chat(self, default: Path) -> None:
        """Load what the open chat asks for: its adapter (with its model and its
        strength) when it has one, else ``default`` without an adapter. Nothing
        happens when that is loaded (or loading) already."""
        base, adapter, scale = default, None, None
        if self.chat.id is not None:
            chosen = self.store.chat_settings(self.chat.id)
            if chosen.get("adapter"):
                adapter, base, problem = chat_adapter(chosen, self.model.adapter_bases)
                if problem:
                    self.message.emit(problem, 15000)
                if adapter is None:
                    base = default
                else:
                    scale = chosen.get("lora_scale")
            else:
                base = self._chat_model(self.chat.id, default)
        if self._is_current(base, adapter, scale):
            self.kept.emit()
            return
        self.load(base, adapter, scale)

    def _listed(self) -> list[Path]:
        return [*library.installed(), *filter(None, (library.demo(), self.model.path))]

    def _chat_model(self, chat_id: int, default: Path) -> Path:
        """The model the chat's last reply was written with, if installed; else
        ``default`` (and a line in the status bar when that is another model)."""
        name = self.store.last_model(chat_id)
        if not name or name == "no model":
            return default
        found = model_named(name, self._models())
        if found is not None:
            return found
        if model_named(name, [default]) is None:
            gone = name.split(" + ", 1)[0]
            self.message.emit(
                f"This chat was written with {gone}, which is not installed: "
                f"{default.stem} goes on with it",
                10000,
            )
        return default

    def _is_current(self, base: Path, adapter: Path | None, scale: Any) -> bool:
        model = self.model
        if model.path != base or model.adapter != adapter:
            return False
        if not (model.loaded is not None or self.loading):
            return False
        if adapter is None or not isinstance(scale, int | float):
            return True
        return abs(float(model.loaded_with.get("lora_scale", 1.0)) - float(scale)) < 1e-9

    def remember(self, chat_id: int | None = None) -> None:
        """Store the adapter choice (and its strength) with the chat: switching
        back to it restores them."""
        chat = chat_id if chat_id is not None else self.chat.id
        if chat is None:
            return  # a new chat takes the choice when it is made
        model = self.model
        choice = {
            "adapter": str(model.adapter) if model.adapter else None,
            "adapter_base": str(model.path) if model.adapter and model.path else None,
            "lora_scale": self._values().lora_scale,
        }

        def write() -> None:
            stored = self.store.chat_settings(chat)
            if stored.get("adapter") or choice["adapter"] or "lora_scale" in stored:
                self.store.set_chat_settings(chat, {**stored, **choice})

        self._background.run(write, lambda _result: None)
