"""App settings, persisted in ``settings.json`` in the user data folder.

What is kept: the generation settings the user chose (app-wide defaults, and
overrides per model, remembered by the model's file name), and window state
(the last chat, the last model, the window geometry, the window's API
server: :class:`ServerChoice`). Values are checked
against the declaration in ``params.py`` on the way in and on the way out: a
stored value that no longer validates is dropped, not fatal.

Writes are atomic (a temporary file renamed over the old one). A file that
cannot be read is set aside as ``settings.json.broken`` and the app starts from
the defaults, saying so in :attr:`AppSettings.problem`.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from localchat.core import paths
from localchat.core.errors import SettingError
from localchat.core.params import GenerationSettings

FORMAT = 1

DEMO_SETTINGS: dict[str, Any] = {"temperature": 0.2}
"""The bundled demo model's own settings: a 1.8M-parameter model answers on
its subject near greedy (its welcome's prompts are tested so) and rambles at
the usual 0.7. The user's choices, app-wide or for it, still come first."""


SERVER_PORT = 4891
"""The API server's port in the window, GPT4All's: its users' scripts keep working."""


@dataclass(frozen=True)
class ServerChoice:
    """The window's "Local server": whether it runs (it starts again with the
    app), where it listens and the API key it asks for ("": none). Checked
    here for type and range; that a host other computers can reach needs a
    key is the server's own rule (``server.security.check_bind``), applied
    when it starts."""

    on: bool = False
    host: str = "127.0.0.1"
    port: int = SERVER_PORT
    api_key: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.on, bool):
            raise SettingError("the server's switch must be true or false")
        if not isinstance(self.host, str) or not self.host or any(c.isspace() for c in self.host):
            raise SettingError(f"the server's host must be an address, got {self.host!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise SettingError(f"the server's port must be a number, got {self.port!r}")
        if not 0 <= self.port <= 65535:
            raise SettingError(f"the server's port must be between 0 and 65535, got {self.port}")
        if not isinstance(self.api_key, str) or any(c.isspace() for c in self.api_key):
            raise SettingError("the server's API key must be text without spaces")


class AppSettings:
    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else paths.settings_file()
        self.problem: str | None = None
        self._lock = threading.Lock()
        self._data: dict[str, Any] = {
            "format": FORMAT,
            "generation": {},
            "models": {},
            "recommended": {},
            "ui": {},
        }
        self._load()

    # -- generation settings ----------------------------------------------------------

    def generation(self, model: str | None = None) -> GenerationSettings:
        """The settings to use: defaults, the model's own recommendation (the
        demo model's, or the catalog's for a model downloaded from it), then
        the user's app-wide choices, then the user's choices for this model."""
        return _merged(
            self.recommended(model), self._data["generation"], self.model_overrides(model)
        )

    def defaults(self, model: str | None = None) -> GenerationSettings:
        """What "Reset to defaults" returns to: the settings without the
        user's choices for this model (its recommendation and the app-wide
        choices stay; with no model, the built-in defaults)."""
        return _merged(self.recommended(model), self._data["generation"] if model else {})

    def recommended(self, model: str | None) -> dict[str, Any]:
        """The model's own recommended settings ({} for most models)."""
        if not model:
            return {}
        if _is_demo(model):
            return dict(DEMO_SETTINGS)
        return dict(self._data["recommended"].get(_key(model), {}))

    def recommend(self, model: str, **values: Any) -> None:
        """Remember the settings recommended for ``model`` (the catalog's):
        they apply under any choice of the user's. Raises
        :class:`SettingError` for a bad value, storing nothing."""
        GenerationSettings().replace(**values)  # validates
        with self._lock:
            self._data["recommended"][_key(model)] = dict(values)
            self._save()

    def set_generation(self, model: str | None = None, **changes: Any) -> None:
        """Remember changes app-wide (``model=None``) or for one model. Raises
        :class:`SettingError` for a bad value, storing nothing."""
        self.generation(model).replace(**changes)  # validates
        with self._lock:
            layer = (
                self._data["generation"]
                if model is None
                else self._data["models"].setdefault(_key(model), {})
            )
            layer.update(changes)
            self._save()

    def model_overrides(self, model: str | None) -> dict[str, Any]:
        """The user's choices for ``model`` ({} for none, or for no model)."""
        return dict(self._data["models"].get(_key(model), {})) if model else {}

    def reset(self, model: str | None = None) -> None:
        """Forget the user's choices for ``model`` (``None``: the app-wide
        choices): it is back to :meth:`defaults`."""
        with self._lock:
            if model is None:
                self._data["generation"] = {}
            else:
                self._data["models"].pop(_key(model), None)
            self._save()

    # -- window state -------------------------------------------------------------------

    def ui(self, key: str, default: Any = None) -> Any:
        return self._data["ui"].get(key, default)

    def set_ui(self, key: str, value: Any) -> None:
        with self._lock:
            self._data["ui"][key] = value
            self._save()

    # -- the window's API server -----------------------------------------------------------

    def server(self) -> ServerChoice:
        """The window's server settings (kept with the window state); a stored
        value that no longer validates is dropped, its default used."""
        stored = self.ui("server", {})
        values: dict[str, Any] = {}
        if isinstance(stored, dict):
            for f in fields(ServerChoice):
                if f.name in stored:
                    try:
                        ServerChoice(**{**values, f.name: stored[f.name]})
                    except (SettingError, TypeError):
                        continue
                    values[f.name] = stored[f.name]
        return ServerChoice(**values)

    def set_server(self, **changes: Any) -> ServerChoice:
        """Remember changes to the server settings; returns them all. Raises
        :class:`SettingError` for a bad value, storing nothing."""
        try:
            choice = ServerChoice(**{**asdict(self.server()), **changes})
        except TypeError as exc:
            raise SettingError(f"unknown server setting: {exc}") from None
        self.set_ui("server", asdict(choice))
        return choice

    # -- file ---------------------------------------------------------------------------

    def _load(self) -> None:
        if not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            for section in ("generation", "models", "recommended", "ui"):
                if not isinstance(data.get(section, {}), dict):
                    raise ValueError(f"'{section}' is not an object")
                self._data[section] = dict(data.get(section, {}))
        except (OSError, ValueError) as exc:
            broken = self.path.with_name(self.path.name + ".broken")
            with contextlib.suppress(OSError):
                os.replace(self.path, broken)
            self.problem = (
                f"the settings file could not be read ({exc}); starting from the defaults "
                f"(the old file is {broken.name})"
            )

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".settings-", suffix=".json", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self._data, f, indent=2, ensure_ascii=False)
            # The rename keeps the file whole if the app dies mid-write. No
            # fsync: the window saves here on its own thread, and settings (not
            # chats) may lose the last change to a power cut.
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _merged(*layers: dict[str, Any]) -> GenerationSettings:
    """The defaults with each layer's values over them, in order; a value
    stored by an older version with other rules is skipped."""
    values: dict[str, Any] = {}
    for layer in layers:
        for name, value in layer.items():
            try:
                GenerationSettings().replace(**{**values, name: value})
            except SettingError:
                continue
            values[name] = value
    return GenerationSettings().replace(**values)


def _key(model: str | None) -> str:
    """Overrides are remembered by file name, so moving the models folder keeps them."""
    return Path(model).name if model else ""


def _is_demo(model: str) -> bool:
    demo = paths.demo_model()
    return bool(demo.name) and Path(model).name == demo.name
