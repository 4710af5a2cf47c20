"""Where LocalChat keeps its files.

All user data (models, chats, settings) lives under one folder: the
``LOCALCHAT_HOME`` environment variable when set, else the platform's user data
folder as platformdirs reports it. Run from a source checkout, the app also
lists the models in the repository's own ``models/`` folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "LocalChat"
HOME_ENV = "LOCALCHAT_HOME"


def home() -> Path:
    """The root of all user data; created on first use."""
    env = os.environ.get(HOME_ENV, "").strip()
    root = Path(env).expanduser() if env else Path(platformdirs.user_data_dir(APP_NAME, False))
    root.mkdir(parents=True, exist_ok=True)
    return root


def _sub(name: str) -> Path:
    path = home() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path:
    """Installed models: every ``*.gguf`` file here is a model."""
    return _sub("models")


CHECKOUT_MODELS_ENV = "LOCALCHAT_CHECKOUT_MODELS"
SOURCE_ROOT = Path(__file__).resolve().parents[2]
"""The folder above the package: a source checkout's root, or site-packages."""


def checkout_models_dir() -> Path | None:
    """A source checkout's ``models/`` folder, whose ``*.gguf`` files are
    listed beside the installed ones: for developers, who keep models with the
    code. None for an installed copy (no LocalChat ``pyproject.toml`` above the
    package), or with ``LOCALCHAT_CHECKOUT_MODELS=0`` (the tests set it)."""
    if os.environ.get(CHECKOUT_MODELS_ENV, "").strip() == "0":
        return None
    folder = SOURCE_ROOT / "models"
    project = SOURCE_ROOT / "pyproject.toml"
    try:
        ours = folder.is_dir() and 'name = "localchat"' in project.read_text("utf-8")
    except OSError:
        return None
    return folder if ours else None


def logs_dir() -> Path:
    return _sub("logs")


def chats_db() -> Path:
    return home() / "chats.sqlite3"


def settings_file() -> Path:
    return home() / "settings.json"


DEMO_ENV = "LOCALCHAT_DEMO_MODEL"
ASSETS = Path(__file__).resolve().parents[1] / "assets"
"""Package data (``localchat/assets``): in a source tree, a wheel and a bundle."""
SHIPPED_DEMO_MODEL = ASSETS / "localchat-demo.gguf"


def demo_model() -> Path:
    """The bundled demo model (``localchat/assets/localchat-demo.gguf``, package
    data: in a wheel and an installer's bundle too; ``LOCALCHAT_DEMO_MODEL``
    names another file, or none when empty)."""
    env = os.environ.get(DEMO_ENV)
    if env is not None:
        return Path(env).expanduser() if env.strip() else Path()
    return SHIPPED_DEMO_MODEL
