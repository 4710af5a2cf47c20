"""``localchat serve``: the OpenAI- and Ollama-compatible API on this
computer (``localchat/server``), run by uvicorn until Ctrl+C."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from localchat.core.engine.client import Engine
from localchat.core.errors import LocalChatError
from localchat.core.models import library

DEFAULT_PORT = 4891


def add_parser(sub: Any) -> None:
    serve = sub.add_parser(
        "serve",
        help="serve an OpenAI- and Ollama-compatible API on this computer",
        description="Serve the installed models over HTTP: OpenAI's API under /v1, Ollama's "
        "under /api. One request generates at a time; the others wait their turn.",
    )
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address to listen on (default %(default)s: this computer only; any other "
        "needs --api-key)",
    )
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="default %(default)s")
    serve.add_argument(
        "--api-key", metavar="KEY", help="require 'Authorization: Bearer KEY' on every request"
    )
    serve.add_argument(
        "-m", "--model", help="load this installed model now (else the first request's model)"
    )
    serve.add_argument(
        "--cors-origin",
        metavar="ORIGIN",
        help="let web pages from this origin (e.g. http://localhost:3000) call the API",
    )


def run(args: argparse.Namespace) -> int:
    from localchat.cli.usage import UsageError
    from localchat.server.app import create_app
    from localchat.server.runner import make_server, uvicorn_config
    from localchat.server.security import ServerConfig, check_bind
    from localchat.server.service import EngineService

    config = ServerConfig(args.host, args.port, args.api_key or None, args.cors_origin)
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {args.port}")
    try:
        check_bind(config)
    except LocalChatError as exc:
        raise UsageError(str(exc)) from None
    _log_to_stderr()
    with Engine() as engine:
        service = EngineService(engine)
        if args.model:
            path = library.resolve(args.model)
            if path not in library.installed():
                raise LocalChatError(f"{path} is not an installed model (see 'localchat models')")
            loaded = service.load(path)
            if loaded.notice:
                print(f"note: {loaded.notice}", file=sys.stderr)
        app = create_app(service, config)
        # Ctrl+C cancels the reply in flight: the shutdown does not wait for it.
        server = make_server(uvicorn_config(app, config), engine.cancel)
        shown = f"[{config.host}]" if ":" in config.host else config.host
        print(
            f"LocalChat API on http://{shown}:{config.port} (OpenAI: /v1, Ollama: /api)",
            file=sys.stderr,
            flush=True,
        )
        server.run()
        if not server.started:
            raise LocalChatError(f"cannot listen on {config.host}:{config.port}")
    return 0


def _log_to_stderr() -> None:
    """The request log lines go to stderr (and the app's log, as every area's)."""
    logger = logging.getLogger("localchat.server")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
