"""The "Local server" switch's work: the OpenAI- and Ollama-compatible API
(``localchat/server``) run inside the app over the window's own engine.

``LocalServer`` starts a ``ServerRunner`` on a job (the server's modules are
imported then, not at start-up; binding the port is part of it, so a port in
use is a one-line failure) and stops it; what the window shows of it is in
``ServerState``. The server's requests reach the GUI thread as queued
signals: each request's record once it is answered (never a signal per
token), and a model the server loaded for a request, which the window then
shows as its loaded model.

The window's jobs that use the engine take ``turns.turn()`` (see
``server/runner.py``'s ``EngineTurns``), so that they never interleave with a
request: a reply, a load, the context count, the X-ray's prompt. The last
two get the engine as ``SharedEngine``, whose calls take their turn."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from PySide6.QtCore import QObject, Signal

from localchat.core.engine.client import Engine
from localchat.core.errors import LocalChatError
from localchat.core.settings import AppSettings, ServerChoice
from localchat.server.runner import EngineTurns
from localchat.ui.bridge import JobThread
from localchat.ui.state import ServerState

if TYPE_CHECKING:
    from localchat.server.runner import ServerRunner

log = logging.getLogger(__name__)

Turn = Callable[[], AbstractContextManager[None]]
"""Hold the engine for a job of the window's (``EngineTurns.turn``)."""

CLOSE_WAIT_S = 5.0
"""How long closing the window waits for the server to end."""


class SharedEngine:
    """The engine for the window's short calls (a count, a prompt shown):
    each in its turn, so that none cuts a request's reply short (a call to
    the engine ends the stream in progress). The rest is the engine's."""

    CALLS = frozenset(
        {
            "plan",
            "prompt",
            "render",
            "tokenize",
            "score",
            "logits",
            "perplexity",
            "load_embedder",
            "embed",
            "embeddings",
        }
    )

    def __init__(self, engine: Engine, turn: Turn) -> None:
        self._engine, self._turn = engine, turn

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._engine, name)
        if name not in self.CALLS:
            return found

        def in_turn(*args: Any, **kwargs: Any) -> Any:
            with self._turn():
                return found(*args, **kwargs)

        return in_turn

    def as_engine(self) -> Engine:
        """Itself, typed as what the window's parts take."""
        return cast(Engine, self)


class LocalServer(QObject):
    """The switch's two states made real: :meth:`switch` on or off (saved
    with the settings), :meth:`resume` at start-up, :meth:`close` at exit."""

    model_loaded = Signal(object, object, object)
    """The server loaded another model for a request: its Path, LoadedModel, ModelInfo."""
    _logged = Signal(object)
    _exited = Signal(object, str)

    def __init__(self, engine: Engine, settings: AppSettings, parent: QObject | None = None):
        super().__init__(parent)
        self.engine, self.settings = engine, settings
        self.turns = EngineTurns()
        self.state = ServerState()
        self.shared = SharedEngine(engine, self.turns.turn)
        self.runner: ServerRunner | None = None
        self._want = False
        self._job: JobThread | None = None
        self._made: ServerRunner | None = None
        """The runner the job started, set from its thread (for :meth:`close`)."""
        self._logged.connect(self.state.log)
        self._exited.connect(self._ended)

    # -- the switch ---------------------------------------------------------------------

    def resume(self) -> None:
        """At start-up: the server starts again when the switch was left on."""
        if self.settings.server().on:
            self.switch(True)

    def switch(self, on: bool) -> None:
        """The user's choice, saved; the server follows it (a step at a time:
        one asked to stop while it starts stops once it has started)."""
        if self.settings.server().on != on:
            self.settings.set_server(on=on)
        self._want = on
        self._settle()

    def _settle(self) -> None:
        """One step towards what the switch says. A failure stays (no retry
        in a loop): turning the switch off and on again tries again."""
        phase = self.state.phase
        if self._want and phase == "off":
            self._start(self.settings.server())
        elif not self._want and phase == "on" and self.runner is not None:
            self.state.set("stopping", self.state.address)
            self.runner.stop()
        elif not self._want and phase == "failed":
            self.state.set("off")

    def close(self) -> None:
        """The window closes: stop the server and wait (a while) for it to end."""
        self._want = False
        if self._job is not None:  # starting: its answer would come too late
            self._job.wait(int(CLOSE_WAIT_S * 1000))
        runner = self.runner or self._made
        if runner is not None:
            runner.stop()
            if not runner.join(CLOSE_WAIT_S):
                log.warning("the API server did not stop in %.0f s", CLOSE_WAIT_S)

    # -- starting and ending (the runner's thread reports by signal) --------------------

    def _start(self, choice: ServerChoice) -> None:
        self.state.set("starting")
        self._job = JobThread(lambda _emit: self._make(choice))
        self._job.done.connect(self._started)
        self._job.failed.connect(self._failed)
        self._job.start()

    def _make(self, choice: ServerChoice) -> ServerRunner:
        """Off the GUI thread: import the server, listen, serve."""
        from localchat.server.runner import ServerRunner
        from localchat.server.security import ServerConfig, is_loopback
        from localchat.server.service import EngineService

        if not is_loopback(choice.host) and not choice.api_key:  # check_bind's rule, in our words
            log.warning("not serving on %s without an API key", choice.host)
            raise LocalChatError(
                f"{choice.host} lets other computers reach the server: it needs an API key"
            )
        service = EngineService(self.engine)
        service.on_load.append(self._server_loaded)
        runner: ServerRunner | None = None

        def exited(error: str) -> None:
            self._exited.emit(runner, error)

        runner = ServerRunner(
            service, turns=self.turns, listeners=[self._logged.emit], on_exit=exited
        )
        runner.start(ServerConfig(choice.host, choice.port, choice.api_key or None))
        self._made = runner
        log.info("API server on %s", runner.address)
        return runner

    def _started(self, runner: ServerRunner) -> None:
        self._job, self._made = None, None
        if not runner.running:  # it ended already (its end, reported first, was not heard)
            self._ended(runner, runner.error, current=True)
            return
        self.runner = runner
        self.state.set("on", runner.address)
        self._settle()  # switched off meanwhile: it stops now

    def _failed(self, message: str) -> None:
        self._job = None
        if self._want:
            self.state.set("failed", error=message)
        else:
            self.state.set("off")

    def _ended(self, runner: ServerRunner | None, error: str, *, current: bool = False) -> None:
        if not current and (runner is None or runner is not self.runner):
            return
        self.runner = None
        if error:
            self.state.set("failed", error=error)
        else:
            self.state.set("off")
        self._settle()  # switched on again meanwhile: it starts again

    def _server_loaded(self, path: Path) -> None:
        """From the server's worker thread, the model just loaded: its header
        is read here, off the GUI thread. Never raises (the request goes on)."""
        try:
            from localchat.core.engine.gguf_info import read_model_info

            loaded = self.engine.loaded
            if loaded is not None:
                self.model_loaded.emit(path, loaded, read_model_info(path))
        except Exception:
            log.exception("could not show the model the API server loaded")
