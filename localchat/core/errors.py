"""Errors the user can act on.

Every exception here carries a one-line message written for the person using
the app; front ends print it as it is (the CLI as ``error: <message>``), never
with a traceback. Anything else that escapes is a bug.
"""

from __future__ import annotations

EXIT_ERROR = 1
"""A command's exit status after an error it reported in one line."""
EXIT_USAGE = 2
"""After a mistake in the command line itself (argparse's status)."""
EXIT_INTERRUPTED = 130
"""After Ctrl+C (128 + SIGINT, as shells report it): what was done is kept
(a reply so far, a training checkpoint); the Train window reads it as "stopped"."""


class LocalChatError(Exception):
    """A problem the user can understand and fix; ``str(err)`` is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class SettingError(LocalChatError, ValueError):
    """A generation setting outside its declared range or of the wrong type."""


class ModelFileError(LocalChatError):
    """A file that is not a usable model (missing, empty, not GGUF, truncated...)."""


class ModelLoadError(LocalChatError):
    """llama.cpp refused to load a model, an adapter or a template."""


class EngineError(LocalChatError):
    """A request the engine could not serve (no model loaded, prompt too long...)."""


class EngineCrashed(EngineError):
    """The worker process died; the next request starts a fresh one."""
