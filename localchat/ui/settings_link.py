"""Keeps the settings form, the saved settings and the model bar in step: a
load shows its settings in the form; an edit is saved (for the model in use),
the adapter's strength for the open chat too; and the model bar offers a
reload while a setting that applies on loading differs from the loaded one.
A loaded model also fits the form to itself: the heading names it, the
context size is capped at what it was trained for, and GPU layers say "none"
where nothing can be offloaded."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject

from localchat.core.engine.protocol import LoadedModel
from localchat.core.models import library
from localchat.core.params import CTX_MULTIPLE, GenerationSettings
from localchat.core.settings import AppSettings
from localchat.ui.context_meter import ContextCounter
from localchat.ui.memory_note import MemoryNote
from localchat.ui.model_bar import ModelBar
from localchat.ui.model_loading import ModelLoader
from localchat.ui.settings_panel import SettingsPanel
from localchat.ui.state import ChatState, ModelState


def gpu_unavailable(loaded: LoadedModel, asked: int) -> str | None:
    """Why GPU layers cannot apply with this engine (None: they can): a build
    of llama.cpp without GPU offload, or one that found no GPU (a fallback
    after a GPU failure says so in its notice: there is a GPU then)."""
    if not loaded.gpu_offload_supported:
        return "This build of llama.cpp runs on the CPU only: it cannot offload layers to a GPU."
    if asked != 0 and loaded.gpu_layers == 0 and not loaded.notice:
        return "No GPU was found: the model runs on the CPU."
    return None


class SettingsLink(QObject):
    def __init__(
        self,
        settings: AppSettings,
        model: ModelState,
        chat: ChatState,
        panel: Callable[[], SettingsPanel],
        bar: ModelBar,
        loader: ModelLoader,
        memory: MemoryNote,
        counter: ContextCounter,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.settings, self.model, self.chat, self._panel = settings, model, chat, panel
        self.bar, self.loader, self.memory, self.counter = bar, loader, memory, counter
        self._shown_scale = 1.0  # the Adapter strength the settings show
        loader.shown.connect(self.show)
        bar.scale.valueChanged.connect(self._scale_edited)
        bar.reload_button.clicked.connect(self.reload)
        model.chosen.connect(lambda _: self._name())
        model.ready.connect(lambda _: self._fit())

    def _name(self) -> None:
        model, name = self.model, None
        if model.path is not None:
            name = "the demo model" if library.is_demo(model.path) else model.path.stem
            if model.adapter is not None:
                name += f" + {model.adapter.stem}"
        self._panel().set_heading(name)

    def _fit(self) -> None:
        """A model is loaded: fit the form to it (not an edit: nothing is saved)."""
        loaded, panel = self.model.loaded, self._panel()
        if loaded is None:
            return
        self._name()
        panel.offer(loaded.reasoning_controls)
        if loaded.n_ctx_train > 0:
            top = max(CTX_MULTIPLE, loaded.n_ctx_train // CTX_MULTIPLE * CTX_MULTIPLE)
            panel.limit("ctx", top)
            # Asked for more, the model runs at ``top``: the same load, not a stale one.
            if self.model.loaded_with.get("ctx", 0) > top:
                self.model.loaded_with["ctx"] = top
        asked = int(self.model.loaded_with.get("gpu_layers", -1))
        why = gpu_unavailable(loaded, asked)
        panel.set_unavailable("gpu_layers", "none (no GPU)" if why else None, why or "")
        values = panel.values()
        self.bar.reload_button.setVisible(self.model.stale(values))
        self.memory.show(values)

    def show(self, settings: GenerationSettings) -> None:
        """A load begins: the form and the strength box show its settings."""
        self.bar.reload_button.hide()
        self._panel().limit("ctx", None)  # the next model's own cap comes when it is loaded
        self._panel().set_values(settings)
        self._shown_scale = settings.lora_scale
        self.bar.set_scale(settings.lora_scale)

    def changed(self, values: GenerationSettings) -> None:
        """The user edited a setting in the form."""
        model = str(self.model.path) if self.model.path else None
        scale_edited = values.lora_scale != self._shown_scale
        self._shown_scale = values.lora_scale
        stored = self.settings.generation(model)
        changed = {
            k: v
            for k, v in values.to_dict().items()
            if getattr(stored, k) != v and (k != "lora_scale" or scale_edited)
        }
        if changed:
            self.settings.set_generation(model, **changed)
        if scale_edited:  # the chat's own strength (a chat's may differ from the model's)
            self.bar.set_scale(values.lora_scale)
            self.loader.remember()
        self.bar.reload_button.setVisible(self.model.stale(values))
        self.memory.show(values)
        self.counter.update()

    def reset(self) -> None:
        """ "Reset to defaults": forget the user's choices for the model in use
        and show its defaults (the demo's own temperature, a catalog model's
        recommendation), then follow them as an edit would."""
        model = str(self.model.path) if self.model.path else None
        self.settings.reset(model)
        panel = self._panel()
        panel.set_values(self.settings.defaults(model))
        self.changed(panel.values())

    def _scale_edited(self, value: float) -> None:
        self._panel().editors["lora_scale"].setValue(value)  # type: ignore[attr-defined]

    def reload(self) -> None:
        if self.model.path is not None and not self.chat.replying:
            scale = self._panel().values().lora_scale
            self.loader.load(self.model.path, self.model.adapter, scale)
