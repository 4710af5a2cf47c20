"""Whether the Hugging Face Hub can be reached at all, found out in two seconds.

huggingface-hub retries a request that cannot connect five times (waiting 1,
2, 4, 8 and 8 seconds, a warning each time), so offline a search took ~24 s
and printed ten lines. Before the Hub is asked, :func:`problem` looks up the
endpoint's host (or the proxy's, where one is set in the environment, as
huggingface-hub's HTTP client uses it) and opens a TCP connection to it, both
within :data:`TIMEOUT`; the answer is kept for a few seconds, so a search and
the file list after it check once. A host that cannot be looked up or
connected to is a one-line reason at once, and the Hub is not asked.

:func:`quiet_retries` keeps huggingface-hub's retry warnings (which the Hub
may still need when a connection drops mid-request) off the terminal: they go
to LocalChat's log at debug level instead.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
import urllib.request
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

TIMEOUT = 1.5
"""Seconds for looking the host up and connecting to it, together (a Hub call
that cannot reach it fails within 2 s, the overhead included)."""
KEEP_OK = 10.0
"""Seconds a host found reachable is not checked again."""
KEEP_FAILED = 3.0
"""Seconds a host found unreachable is not checked again (short: the network
may come back)."""

Address = tuple[Any, ...]
"""What ``socket.getaddrinfo`` gives for each address."""

_lock = threading.Lock()
_known: dict[tuple[str, int], tuple[float, str | None]] = {}


def problem(url: str, *, timeout: float = TIMEOUT) -> str | None:
    """Why ``url``'s server (or the proxy to it) cannot be reached now, in a
    few words; None when it can (or when that cannot be checked here)."""
    target = _target(url)
    if target is None:
        return None
    if _loopback(target[0]):  # checked in a moment: every time (a port may change hands)
        return _probe(*target, timeout=timeout)
    now = time.monotonic()
    with _lock:
        known = _known.get(target)
    if known is not None:
        at, reason = known
        if now - at < (KEEP_OK if reason is None else KEEP_FAILED):
            return reason
    reason = _probe(*target, timeout=timeout)
    with _lock:
        _known[target] = (time.monotonic(), reason)
    return reason


def forget() -> None:
    """Check every host again at the next :func:`problem` (for tests)."""
    with _lock:
        _known.clear()


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _target(url: str) -> tuple[str, int] | None:
    """The host and port a connection to ``url`` goes to first: the proxy's
    where the environment sets one for it (and ``no_proxy`` does not exempt
    the host), else the server's."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host or parts.scheme not in ("http", "https"):
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if proxy and not urllib.request.proxy_bypass(host):
        if "://" not in proxy:
            proxy = "http://" + proxy
        through = urlsplit(proxy)
        if not through.hostname:
            return None
        try:
            default = (
                443 if through.scheme == "https" else 1080 if "socks" in through.scheme else 80
            )
            return through.hostname, through.port or default
        except ValueError:
            return None
    return host, port


def _probe(host: str, port: int, *, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    found = _look_up(host, port, timeout)
    if isinstance(found, str):
        return found
    last = f"nothing answers at {host}:{port}"
    for family, kind, proto, _name, address in found:
        left = deadline - time.monotonic()
        if left <= 0:
            return f"{host}:{port} did not answer within {timeout:g} s"
        with socket.socket(family, kind, proto) as s:
            s.settimeout(left)
            try:
                s.connect(address)
            except TimeoutError:
                return f"{host}:{port} did not answer within {timeout:g} s"
            except OSError as exc:
                last = f"cannot connect to {host}:{port} ({exc.strerror or exc})"
                continue
            return None
    return last


def _look_up(host: str, port: int, timeout: float) -> list[Address] | str:
    """The host's addresses, or why there are none; a look-up that takes
    longer than ``timeout`` is given up (it goes on, unwatched, on a thread
    of its own: ``getaddrinfo`` cannot be interrupted)."""
    result: list[list[Address] | str] = []

    def look() -> None:
        try:
            result.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            reason = exc.strerror if isinstance(exc, socket.gaierror) and exc.strerror else exc
            result.append(f"cannot look up {host} ({reason})")
        except Exception as exc:  # e.g. an IDNA error for an odd host name
            result.append(f"cannot look up {host} ({exc})")

    thread = threading.Thread(target=look, name="look up the Hub", daemon=True)
    thread.start()
    thread.join(timeout)
    if not result:
        return f"looking up {host} took longer than {timeout:g} s"
    return result[0] or f"cannot look up {host} (no address)"


# -- huggingface-hub's retry warnings ------------------------------------------------

_RETRY_WORDS = ("thrown while requesting", "Retrying in", "Rate limited. Waiting")
_quieted = False


class _RetryFilter(logging.Filter):
    """Moves huggingface-hub's retry warnings to LocalChat's log, at debug."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(words in message for words in _RETRY_WORDS):
            log.debug("huggingface-hub: %s", message)
            return False
        return True


def quiet_retries() -> None:
    """Keep huggingface-hub's retry warnings off the terminal (once per process)."""
    global _quieted
    if _quieted:
        return
    _quieted = True
    logging.getLogger("huggingface_hub.utils._http").addFilter(_RetryFilter())
