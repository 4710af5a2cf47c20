"""Who may use the server: a ``Host`` header naming this server (a web page
on another site cannot reach it through DNS rebinding), the API key when one
is set (``Authorization: Bearer KEY``), and CORS only for an origin the user
named. :func:`check_bind` refuses to listen beyond this computer without a key."""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from localchat.core.errors import LocalChatError
from localchat.server.errors import ApiError, error_response

LOOPBACK_NAMES = ("localhost",)
WILDCARDS = ("0.0.0.0", "::", "")


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 4891
    api_key: str | None = None
    cors_origin: str | None = None


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(config: ServerConfig) -> None:
    """A server other computers can reach needs an API key."""
    if not is_loopback(config.host) and not config.api_key:
        raise LocalChatError(
            f"--host {config.host} lets other computers reach the server: it needs --api-key"
        )


def allowed_hosts(config: ServerConfig) -> set[str] | None:
    """The ``Host`` headers accepted (None: any, for a server listening on
    every address, where the API key guards it)."""
    if config.host in WILDCARDS:
        return None
    names = {config.host, "localhost", "127.0.0.1"}
    out = set()
    for name in names:
        shown = f"[{name}]" if ":" in name else name
        out.add(f"{shown}:{config.port}".lower())
    return out


class Guard:
    """ASGI middleware: the Host check, then the API key."""

    def __init__(self, app: ASGIApp, config: ServerConfig) -> None:
        self.app = app
        self.hosts = allowed_hosts(config)
        self.key = config.api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1").lower()
        error = None
        if self.hosts is not None and host not in self.hosts:
            error = ApiError(403, f"Host {host or '(none)'!r} is not this server", code="bad_host")
        elif self.key and scope.get("method") != "OPTIONS":
            given = headers.get(b"authorization", b"").decode("latin-1")
            scheme, _, token = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                token.strip().encode(), self.key.encode()
            ):
                error = ApiError(
                    401,
                    "a valid API key is needed (Authorization: Bearer KEY)",
                    code="invalid_api_key",
                )
        if error is None:
            await self.app(scope, receive, send)
            return
        await error_response(scope.get("path", ""), error)(scope, receive, send)
