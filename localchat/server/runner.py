"""The API server inside a process that does other things: the window's
"Local server" switch. (``localchat serve`` uses its uvicorn settings.)

:class:`ServerRunner` is one run. ``start(config)`` binds the socket itself,
so a port in use or a bad address is a one-line error at once, and port 0
gets a free port whose number the Host guard then knows; uvicorn serves it on
an event loop in a thread of its own, without signal handlers (only the main
thread may have them, and the window's are Qt's). ``stop()`` asks it to end
and cancels the server's reply in flight (``engine.cancel()``), but never the
window's own; the thread ends once uvicorn has shut down and every turn taken
on its loop is over.

:class:`EngineTurns` serves the process's other users of the engine (the
window's replies, loads and counts), each from its own thread:
``turns.turn()`` is the service's turn while a server runs (in arrival order
with the requests) and holds nothing otherwise. Switching is safe both ways:
a server answers its first request once the turns taken without it are over,
and once it stops, new turns wait for those taken on its loop.

Imported by the window at start-up (for :class:`EngineTurns`): uvicorn,
asyncio and the app are imported only when a server starts."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from localchat.core.errors import LocalChatError

if TYPE_CHECKING:
    import socket

    from localchat.core.engine.client import Engine
    from localchat.server.app import RequestListener
    from localchat.server.security import ServerConfig
    from localchat.server.service import EngineService

log = logging.getLogger("localchat.server")

GRACEFUL_S = 3
"""How long a stop lets the responses under way finish before it cancels them."""
BACKLOG = 2048  # uvicorn's


def shown(host: str, port: int) -> str:
    """``host:port`` as a URL writes it ("[::1]:4891")."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def uvicorn_config(app: Any, config: ServerConfig, **options: Any) -> Any:
    """uvicorn's settings for our app: its own log at warnings only (each
    request has our line instead), three seconds' grace at shutdown."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_S,
        **options,
    )


def make_server(config: Any, on_exit: Callable[[], None], *, signals: bool = True) -> Any:
    """uvicorn's server, calling ``on_exit`` when a signal asks it to stop (to
    cancel the reply in flight, so that the shutdown does not wait for it).
    Without ``signals`` it installs no signal handlers: it runs in a thread."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            on_exit()
            super().handle_exit(sig, frame)

    class ThreadServer(Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

        def install_signal_handlers(self) -> None:  # uvicorn before 0.29
            pass

    return (Server if signals else ThreadServer)(config)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; a one-line :class:`LocalChatError`
    (logged with its cause) when the address is in use or not this computer's."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if sys.platform != "win32":  # there it would let two servers share the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        log.warning("cannot listen on %s", shown(host, port), exc_info=True)
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise LocalChatError(
            f"cannot listen on {shown(host, port)}: {reason[:1].lower()}{reason[1:]}"
        ) from None
    return sock


class EngineTurns:
    """The engine's other users' turns (see the module's docstring). Counts
    who holds or waits: ``free`` turns (no server), ``served`` turns (the
    service's), and ``holding`` (those that have the engine now)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._service: EngineService | None = None
        self._closing = False
        self._free = 0
        self._served = 0
        self._holding = 0

    @property
    def serving(self) -> bool:
        """Whether a server takes turns with the window now."""
        return self._service is not None

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the engine (from any thread but a server's loop), waiting for
        the server's request in progress and those before this turn."""
        with self._cond:
            self._cond.wait_for(lambda: not self._closing)
            service = self._service
            if service is None:
                self._free += 1
            else:
                self._served += 1
        try:
            with service.turn() if service is not None else contextlib.nullcontext():
                with self._cond:
                    self._holding += 1
                try:
                    yield
                finally:
                    with self._cond:
                        self._holding -= 1
        finally:
            with self._cond:
                if service is None:
                    self._free -= 1
                else:
                    self._served -= 1
                self._cond.notify_all()

    def cancel_server(self, engine: Engine) -> None:
        """Cancel what the engine generates, unless a turn holds it (that is
        the window's own reply). Atomic with a turn's start: one that gets the
        engine just after still generates (its request resets the flag)."""
        with self._cond:
            if not self._holding:
                engine.cancel()

    def serve(self, service: EngineService) -> None:
        """From a thread, the service attached to its running loop: new turns
        are the service's; returns once the turns taken without it are over,
        holding the service's turn meanwhile (its requests wait)."""
        with service.turn(), self._cond:  # first in the service's line: the rest follow
            self._service = service
            self._cond.wait_for(lambda: self._free == 0)

    def unserve(self, service: EngineService) -> None:
        """From a thread, the service still on its loop: no more turns of the
        service's; returns once those taken (and the requests before them)
        are over. New turns wait until then."""
        with self._cond:
            self._service = None
            self._closing = True
        try:
            with service.turn():  # after every request and turn in line before it
                pass
            with self._cond:
                self._cond.wait_for(lambda: self._served == 0)
        finally:
            with self._cond:
                self._closing = False
                self._cond.notify_all()


class ServerRunner:
    """One run of the server over ``service``, in a thread: :meth:`start`
    once, then :meth:`stop`. ``listeners`` get each request's record (on the
    server's loop); ``on_exit`` is called from its thread when it has ended,
    with "" or why it stopped by itself (one line; the traceback is logged)."""

    def __init__(
        self,
        service: EngineService,
        *,
        turns: EngineTurns | None = None,
        listeners: Sequence[RequestListener] = (),
        on_exit: Callable[[str], None] | None = None,
    ) -> None:
        self.service, self.turns = service, turns
        self.listeners = list(listeners)
        self.on_exit = on_exit
        self.config: ServerConfig | None = None
        """What it serves, with the port it got (once started)."""
        self.address = ""
        """``host:port`` it listens on, once started."""
        self.error = ""
        """Why it stopped by itself (one line), once it has ended."""
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, config: ServerConfig) -> str:
        """Listen on ``config``'s address and serve from a thread; returns the
        address ("127.0.0.1:4891"). Raises a one-line :class:`LocalChatError`
        when it cannot listen (a host others reach without a key, the port in
        use). Requests that come before it serves wait in the socket's queue."""
        from localchat.server.app import create_app
        from localchat.server.security import check_bind

        if self._thread is not None:
            raise RuntimeError("a ServerRunner serves once")
        check_bind(config)
        sock = bind(config.host, config.port)
        try:
            self.config = dataclasses.replace(config, port=int(sock.getsockname()[1]))
            app = create_app(self.service, self.config)
            app.state.request_listeners.extend(self.listeners)
            # Our loggers are the app's: uvicorn leaves logging as it is.
            self._server = make_server(
                uvicorn_config(app, self.config, log_config=None), self.stop, signals=False
            )
            self._thread = threading.Thread(
                target=self._run, args=(sock,), name="localchat-api-server", daemon=True
            )
            self._thread.start()
        except BaseException:
            sock.close()
            raise
        self.address = shown(self.config.host, self.config.port)
        return self.address

    def stop(self) -> None:
        """Stop accepting requests and end the run (the thread ends shortly
        after: :meth:`join`, or ``on_exit``). The server's reply in flight is
        cancelled, the window's own is not. Safe to call more than once."""
        server = self._server
        if server is None or server.should_exit:
            return
        server.should_exit = True
        if self.turns is None:
            self.service.engine.cancel()
        else:
            self.turns.cancel_server(self.service.engine)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the run to end; whether it has."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    def _run(self, sock: socket.socket) -> None:
        import asyncio

        error = ""
        try:
            config = self._server.config
            factory = config.get_loop_factory() if hasattr(config, "get_loop_factory") else None
            with asyncio.Runner(loop_factory=factory) as runner:
                runner.run(self._serve(sock))
        except BaseException as exc:  # uvicorn's startup exits with SystemExit
            log.error("the API server stopped", exc_info=exc)
            text = " ".join(str(exc).split()) or type(exc).__name__
            error = f"the API server stopped: {text[:200]}"
        finally:
            sock.close()
        self.error = error
        if self.on_exit is not None:
            self.on_exit(error)

    async def _serve(self, sock: socket.socket) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        self.service.attach(loop)
        try:
            if self.turns is not None:
                await loop.run_in_executor(None, self.turns.serve, self.service)
            if not self._server.should_exit:
                await self._server.serve(sockets=[sock])
        finally:
            if self.turns is not None:
                await loop.run_in_executor(None, self.turns.unserve, self.service)
            self.service.attach(None)
