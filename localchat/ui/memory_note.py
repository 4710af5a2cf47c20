"""The note under the context size: the memory the model needs at that size,
shown before it is applied (the estimate ``localchat info --ctx`` gives), and
whether this computer has that much free."""

from __future__ import annotations

from collections.abc import Callable

from localchat.core.engine.gguf_info import ModelInfo
from localchat.core.params import GenerationSettings
from localchat.ui.settings_panel import SettingsPanel
from localchat.ui.state import ModelState


def memory_note(info: ModelInfo, values: GenerationSettings) -> tuple[str, bool]:
    """The note's text, and whether it warns (more than the free memory). The
    RAM alone: the GPU is not asked here, on the GUI thread."""
    from localchat.core.models import fit  # with the settings, after the first paint

    verdict = fit.fit(info, values.ctx, gpu=None)
    return verdict.note(), verdict.short_of_free


class MemoryNote:
    """Keeps the note under the settings' context size: redrawn when a model
    has loaded and (``show``) when the settings change."""

    def __init__(self, model: ModelState, panel: Callable[[], SettingsPanel]) -> None:
        self.model, self._panel = model, panel
        model.ready.connect(lambda _: self.show(self._panel().values()))

    def show(self, values: GenerationSettings) -> None:
        info = self.model.info
        if info is None:
            self._panel().set_note("ctx", "")
            return
        text, warn = memory_note(info, values)
        self._panel().set_note("ctx", text, warn=warn)
