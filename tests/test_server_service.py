"""The server's engine service without HTTP: the window's replies take turns
with the requests, in arrival order."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from localchat.server.service import EngineService


def test_a_turn_waits_for_the_request_in_progress_and_holds_off_later_ones() -> None:
    service = EngineService(engine=None)  # type: ignore[arg-type]  # the lock only
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    order: list[str] = []

    async def request(name: str, hold: float) -> None:
        async with service._lock:
            order.append(f"{name} starts")
            await asyncio.sleep(hold)
            order.append(f"{name} ends")

    def window_reply() -> None:
        with service.turn():
            order.append("window starts")
            time.sleep(0.2)
            order.append("window ends")

    try:
        service.attach(loop)
        first = asyncio.run_coroutine_threadsafe(request("first", 0.3), loop)
        time.sleep(0.1)  # the first request holds the engine
        window = threading.Thread(target=window_reply)
        window.start()
        time.sleep(0.1)  # the window waits its turn
        assert order == ["first starts"]
        second = asyncio.run_coroutine_threadsafe(request("second", 0), loop)
        first.result(5)
        window.join(5)
        second.result(5)
        assert order == [
            "first starts",
            "first ends",
            "window starts",
            "window ends",
            "second starts",
            "second ends",
        ]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_without_a_server_a_turn_holds_nothing() -> None:
    service = EngineService(engine=None)  # type: ignore[arg-type]
    with service.turn(), service.turn():  # not even against itself
        pass
    loop: Any = asyncio.new_event_loop()
    service.attach(loop)  # attached but not running: no server
    with service.turn():
        pass
    loop.close()
