"""A queue of model downloads: several waiting, one (or a few) at a time,
each paused, resumed or cancelled on its own.

Each download is a :func:`~localchat.core.models.transfer.pull` on a thread
of its own, so everything ``pull`` promises holds here too: a ``.part`` file
that a later try continues with an HTTP Range request, the sha256 checked
while the bytes arrive, and the atomic rename into the models folder. A pause
keeps the ``.part``; a cancel deletes it. Downloads an earlier run left
unfinished are found again on start (from their ``.part.json`` sidecars, see
:mod:`~localchat.core.models.partials`) and listed as paused.

Listeners get a copy of a download each time it changes (state, or progress
at most ten times a second), on the download's own thread.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from localchat.core import paths
from localchat.core.errors import LocalChatError
from localchat.core.models import hub, partials, transfer

log = logging.getLogger(__name__)

State = Literal["queued", "downloading", "paused", "failed", "done", "cancelled"]
ACTIVE: tuple[State, ...] = ("queued", "downloading")


@dataclass(frozen=True)
class Download:
    """One model's download, as it stands (a snapshot: the queue makes a new
    one at each change)."""

    model: hub.RemoteModel
    state: State = "queued"
    done: int = 0
    """Bytes on disk, of all parts."""
    speed: float = 0.0
    """Bytes per second over the last few seconds (0 when not downloading)."""
    message: str = ""
    """Why it failed, or what a pause or cancel left."""
    path: Path | None = None
    """The installed model, once done."""
    stopping: bool = False
    """A pause or cancel was asked for and is taking effect."""
    tag: Any = None
    """Whatever the caller attached (the catalog entry it came from)."""

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def total(self) -> int:
        return self.model.size

    @property
    def eta(self) -> float | None:
        if self.state != "downloading" or self.speed <= 0:
            return None
        return (self.total - self.done) / self.speed


Listener = Callable[[Download], None]


class Downloads:
    """The queue. ``parallel`` downloads run at once (one by default: the
    first model is ready soonest, and the connection is shared anyway)."""

    def __init__(
        self,
        on_change: Listener | None = None,
        *,
        folder: Path | None = None,
        parallel: int = 1,
        restore: bool = True,
    ) -> None:
        self.folder = folder or paths.models_dir()
        self.parallel = max(1, parallel)
        self._listeners: list[Listener] = [on_change] if on_change else []
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._items: dict[str, Download] = {}
        self._controls: dict[str, transfer.Control] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._closed = False
        if restore and self.folder.is_dir():
            for model, done in partials.interrupted(self.folder):
                self._items[model.name] = Download(
                    model, "paused", done, message="interrupted; resume to continue"
                )

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    # -- what is there ----------------------------------------------------------------

    def items(self) -> list[Download]:
        """Every download, in the order they were added."""
        with self._lock:
            return list(self._items.values())

    def get(self, name: str) -> Download | None:
        with self._lock:
            return self._items.get(name)

    def busy(self) -> bool:
        """Something is queued or downloading."""
        with self._lock:
            return any(d.state in ACTIVE for d in self._items.values())

    def wait(self, timeout: float | None = None) -> bool:
        """Until nothing is queued or downloading; False on timeout."""
        with self._idle:
            return self._idle.wait_for(
                lambda: (
                    not any(
                        d.state in ACTIVE or d.name in self._threads for d in self._items.values()
                    )
                ),
                timeout,
            )

    # -- what the user does -----------------------------------------------------------

    def add(self, model: hub.RemoteModel, *, tag: Any = None) -> Download:
        """Queue ``model``. A download of it already here is resumed instead
        (a paused or failed one continues where it stopped)."""
        with self._lock:
            if self._closed:
                raise transfer.DownloadError("the download queue is closed")
            old = self._items.get(model.name)
            if old is not None and old.state in ACTIVE:
                raise transfer.DownloadError(f"{model.name} is already being downloaded")
            if (self.folder / model.name).exists():
                raise transfer.DownloadError(f"{model.name} is already installed")
            done = old.done if old is not None and old.state == "paused" else 0
            item = Download(model, "queued", done, tag=tag if tag is not None else _tag(old))
            self._items.pop(model.name, None)
            self._items[model.name] = item
        self._changed(item)
        self._schedule()
        return item

    def pause(self, name: str) -> None:
        """Stop a download and keep its bytes (a queued one just waits)."""
        self._stop(name, "pause")

    def cancel(self, name: str) -> None:
        """Stop a download and delete its bytes."""
        self._stop(name, "cancel")

    def resume(self, name: str) -> Download:
        """Queue a paused or failed download again; it continues from its ``.part``."""
        item = self.get(name)
        if item is None:
            raise transfer.DownloadError(f"no download of {name}")
        if item.state in ACTIVE:
            return item
        return self.add(item.model, tag=item.tag)

    def forget(self, name: str) -> None:
        """Take a finished, failed or cancelled download off the list (a failed
        one's bytes stay on disk, resumable by a later pull)."""
        with self._lock:
            item = self._items.get(name)
            if item is None or item.state in ACTIVE:
                return
            del self._items[name]

    def close(self, timeout: float = 10.0) -> None:
        """Pause everything (bytes kept, to resume on the next start) and wait
        for the threads."""
        with self._lock:
            self._closed = True
            running = list(self._threads.values())
            for name, item in list(self._items.items()):
                if item.state == "queued":
                    self._items[name] = dataclasses.replace(item, state="paused")
            for control in self._controls.values():
                control.pause()
        for thread in running:
            thread.join(timeout)

    # -- the work -----------------------------------------------------------------------

    def _stop(self, name: str, mode: Literal["pause", "cancel"]) -> None:
        with self._lock:
            item = self._items.get(name)
            if item is None:
                return
            control = self._controls.get(name)
            if control is not None and item.state in ACTIVE:  # its thread says how it ended
                control.pause() if mode == "pause" else control.cancel()
                item = self._items[name] = dataclasses.replace(item, stopping=True)
            elif mode == "pause" and item.state == "queued":
                item = self._items[name] = dataclasses.replace(item, state="paused", message="")
            elif mode == "cancel" and item.state not in ("done", "cancelled"):
                partials.discard(item.model, self.folder)
                item = self._items[name] = dataclasses.replace(
                    item, state="cancelled", done=0, speed=0.0, message="cancelled; nothing kept"
                )
            else:
                return
        self._changed(item)

    def _schedule(self) -> None:
        with self._lock:
            if self._closed:
                return
            for name, item in self._items.items():
                if len(self._threads) >= self.parallel:
                    break
                if item.state != "queued" or name in self._threads:
                    continue
                control = transfer.Control()
                self._controls[name] = control
                thread = threading.Thread(
                    target=self._run, args=(name, control), name=f"download {name}", daemon=True
                )
                self._threads[name] = thread
                thread.start()

    def _run(self, name: str, control: transfer.Control) -> None:
        item = self._update(name, state="downloading", message="", speed=0.0)
        try:
            path = transfer.pull(
                item.model,
                dest=self.folder,
                control=control,
                on_progress=lambda p: self._progress(name, p),
            )
        except transfer.DownloadStopped as exc:
            if control.mode == "cancel":
                self._update(name, state="cancelled", done=0, message=str(exc))
            else:
                self._update(name, state="paused", message=str(exc))
        except LocalChatError as exc:
            self._update(name, state="failed", message=str(exc))
        except Exception as exc:  # a bug: say it in one line rather than lose the queue
            log.exception("downloading %s failed", name)
            self._update(
                name, state="failed", message=f"internal error: {type(exc).__name__}: {exc}"
            )
        else:
            self._update(name, state="done", done=item.total, path=path, message="")
        finally:
            with self._idle:
                self._threads.pop(name, None)
                self._controls.pop(name, None)
                self._idle.notify_all()
            self._schedule()

    def _progress(self, name: str, p: transfer.Progress) -> None:
        self._update(name, done=p.done, speed=p.speed)

    def _update(self, name: str, **changes: Any) -> Download:
        with self._idle:
            item = self._items[name]
            if "state" in changes:
                changes.setdefault("stopping", False)
                if changes["state"] != "downloading":
                    changes.setdefault("speed", 0.0)
            item = self._items[name] = dataclasses.replace(item, **changes)
            self._idle.notify_all()
        self._changed(item)
        return item

    def _changed(self, item: Download) -> None:
        for listener in self._listeners:
            listener(item)


def _tag(old: Download | None) -> Any:
    return old.tag if old is not None else None
