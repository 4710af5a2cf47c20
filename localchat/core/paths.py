"""Where LocalChat keeps its files.

All user data (models, chats, settings) lives under one folder: the
``LOCALCHAT_HOME`` environment variable when set, else the platform's user data
folder as platformdirs reports it.
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
