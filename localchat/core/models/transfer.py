"""Download a model the Hub listed: resumable, verified, installed only whole.

huggingface-hub deletes its temporary file when a download fails, so the
transfer is ours; it goes through huggingface-hub's HTTP session and headers,
so ``HF_ENDPOINT``, ``HF_TOKEN`` and proxy settings apply and TLS stays
verified. Each file of a model is fetched in three steps:

0. (once per pull) the Hub's host must be reachable
   (:func:`~.hub.check_reachable`): offline is one line at once;
1. request: a GET from the first missing byte (an HTTP Range request when a
   ``.part`` of the same file is there, see :mod:`.partials`), with the user's
   token, following the Hub's redirects to its storage; an HTTP error becomes
   a one-line :class:`DownloadError` or :class:`~.hub.HubError`;
2. receive: the body is appended to the ``.part`` as it arrives, written and
   hashed on a thread of its own (:class:`_Sink`), until it is whole or the
   user pauses (keeps the ``.part``) or cancels (deletes it); progress goes to
   a callback at most ten times a second;
3. verify: the sha256 computed on the way (on resume, over the bytes already
   there first) must be the Hub's LFS sha256, or the file is deleted.

Only when every file is whole and verified is each renamed into place; for a
split model, the first part (the one that is listed and loaded) last.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from localchat.core import paths
from localchat.core.errors import LocalChatError
from localchat.core.models import partials
from localchat.core.models.hub import (
    HubError,
    RemoteFile,
    RemoteModel,
    check_path,
    check_reachable,
    endpoint,
    hub_error,
)
from localchat.core.units import human_size

CHUNK = 1 << 20
DISK_MARGIN = 64 << 20
"""Free space kept beyond what a download needs."""


class DownloadError(LocalChatError):
    """A download failed; what is on disk is kept where it can be resumed."""


class DownloadStopped(LocalChatError):
    """Paused or cancelled by the user."""


@dataclass
class Progress:
    name: str
    done: int
    """Bytes on disk of the whole model (all parts)."""
    total: int
    speed: float
    """Bytes per second, over the last few seconds."""
    resumed_from: int = 0

    @property
    def eta(self) -> float | None:
        return (self.total - self.done) / self.speed if self.speed > 0 else None


@dataclass
class Control:
    """Lets another thread pause (keep the ``.part``) or cancel (delete it)."""

    _stop: threading.Event = field(default_factory=threading.Event)
    mode: Literal["pause", "cancel"] = "pause"

    def pause(self) -> None:
        self.mode = "pause"
        self._stop.set()

    def cancel(self) -> None:
        self.mode = "cancel"
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()


OnProgress = Callable[[Progress], None]


def pull(
    model: RemoteModel,
    *,
    dest: Path | None = None,
    on_progress: OnProgress | None = None,
    control: Control | None = None,
) -> Path:
    """Download ``model`` into the models folder (resuming any ``.part`` left
    by an earlier try), verify every part, and return the installed path."""
    folder = dest or paths.models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for part in model.parts:
        check_path(model.repo_id, part.path)
    target = folder / model.name
    if target.exists():
        raise DownloadError(f"{model.name} is already installed")
    files = [partials.part_path(folder, p) for p in model.parts]
    have = [partials.resumable(f, model, p) for f, p in zip(files, model.parts, strict=True)]
    _check_space(folder, model, sum(have))
    if any(already < part.size for already, part in zip(have, model.parts, strict=True)):
        check_reachable()  # offline: one line at once; the .part files stay as they are
    meter = _Meter(model.name, model.size, sum(have), on_progress)
    control = control or Control()
    offset = 0
    for part, partial, already in zip(model.parts, files, have, strict=True):
        _PartFetch(model, part, partial, already, offset, meter, control).run()
        offset += part.size
    # Every part is whole and verified: install them, the first one last.
    for partial in reversed(files):
        os.replace(partial, partial.with_suffix(""))  # drop ".part"
        partials.sidecar(partial).unlink(missing_ok=True)
    return target


def _open_part(partial: Path) -> Any:
    return partial.open("ab")


def _check_space(folder: Path, model: RemoteModel, have: int) -> None:
    need = model.size - have
    free = shutil.disk_usage(folder).free
    if need + DISK_MARGIN > free:
        raise DownloadError(
            f"not enough disk space for {model.name}: it needs {human_size(need)} more, "
            f"{human_size(free)} is free in {folder}"
        )


class _PartFetch:
    """One file of a model, from the bytes its ``.part`` has to the verified
    whole: request, receive, verify."""

    def __init__(
        self,
        model: RemoteModel,
        part: RemoteFile,
        partial: Path,
        have: int,
        offset: int,
        meter: _Meter,
        control: Control,
    ) -> None:
        self.model, self.part, self.partial = model, part, partial
        self.name = PurePosixPath(part.path).name
        self.offset = offset
        """Bytes of the model's earlier parts (progress counts the whole model)."""
        self.meter, self.control = meter, control
        self.done = have
        """Bytes of this part in the ``.part``, all of them in ``digest``."""
        self.digest = _new_digest(part)

    def run(self) -> None:
        """Bring the ``.part`` to the whole of the file and verify it."""
        if self.done:
            self._hash_kept()
        if self.done < self.part.size:
            try:
                with self._request() as response:
                    self._receive(response)
            except LocalChatError:
                raise
            except OSError as exc:  # writing
                raise self._write_error(exc) from None
            except Exception as exc:  # reading
                if _is_read_error(exc):
                    raise _closed_early(self.name, self.done, self.part.size) from None
                raise hub_error(exc, self.model.repo_id, self.part.path) from None
        self._stop_if_asked()
        self._verify()

    def _hash_kept(self) -> None:
        """The bytes an earlier try left, hashed once before more arrive."""
        with self.partial.open("rb") as f:
            while block := f.read(CHUNK):
                self.digest.update(block)

    # -- 1. request ----------------------------------------------------------------

    @contextlib.contextmanager
    def _request(self) -> Iterator[Any]:
        """The response to a GET of the file from the first byte not here (a
        Range request when some are), with the user's token, following the
        Hub's redirects; an HTTP error status becomes a one-line error."""
        from huggingface_hub import get_session, hf_hub_url
        from huggingface_hub.utils import build_hf_headers

        url = hf_hub_url(
            self.model.repo_id, self.part.path, revision=self.model.revision, endpoint=endpoint()
        )
        headers = build_hf_headers()
        if self.done:
            headers["Range"] = f"bytes={self.done}-"
        with get_session().stream(
            "GET", url, headers=headers, follow_redirects=True, timeout=30.0
        ) as response:
            if response.status_code >= 400:
                raise hub_error(_http_error(response), self.model.repo_id, self.part.path)
            yield response

    # -- 2. receive ----------------------------------------------------------------

    def _receive(self, response: Any) -> None:
        """Append the body to the ``.part`` as it arrives (written and hashed
        off this thread), until it ends or the user stops it; flushed to disk
        before it returns. A server that ignored the Range starts it over."""
        with _open_part(self.partial) as out:
            if self.done and response.status_code != 206:  # the server sent it all again
                out.truncate(0)
                out.seek(0)
                self.digest, self.done = _new_digest(self.part), 0
            sink = _Sink(out, self.digest)
            received = self.done
            try:
                for block in response.iter_bytes():  # as they arrive: a pause is quick
                    if self.control.stopped:
                        break
                    if received + len(block) > self.part.size:
                        raise DownloadError(f"the server sent more than {self.name}'s size")
                    sink.put(block)
                    received += len(block)
                    self.meter.update(self.offset + received)
            finally:
                sink.close()
                self.done += sink.written
            if sink.error is not None:
                raise sink.error
            out.flush()
            os.fsync(out.fileno())

    def _write_error(self, exc: OSError) -> DownloadError:
        if exc.errno == errno.ENOSPC:
            return DownloadError(
                f"the disk is full: {self.name} stopped at {human_size(self.done)} of "
                f"{human_size(self.part.size)} (kept: free some space and pull again to resume)"
            )
        return DownloadError(f"cannot write {self.partial}: {exc.strerror or exc}")

    def _stop_if_asked(self) -> None:
        """A pause keeps the ``.part``, a cancel deletes it; either ends the pull."""
        if not self.control.stopped:
            return
        self.meter.update(self.offset + self.done, force=True)
        if self.control.mode == "cancel":
            partials.remove(self.partial)
            raise DownloadStopped(f"cancelled {self.name}; nothing kept")
        raise DownloadStopped(
            f"paused {self.name} at {human_size(self.done)} of {human_size(self.part.size)}; "
            "pull again to resume"
        )

    # -- 3. verify -----------------------------------------------------------------

    def _verify(self) -> None:
        """The file is whole and its hash is the Hub's; a wrong one is deleted."""
        if self.done < self.part.size:
            raise _closed_early(self.name, self.done, self.part.size)
        self.meter.update(self.offset + self.done, force=True)
        expected = (self.part.sha256 or self.part.blob_id or "").lower()
        if expected and self.digest.hexdigest() != expected:
            partials.remove(self.partial)
            raise DownloadError(
                f"{self.name} failed its checksum (not the Hub's sha256): the download was "
                "deleted; pull again to retry"
            )


class _Meter:
    """Progress callbacks, at most ten a second, with a speed over a few seconds."""

    def __init__(self, name: str, total: int, start: int, callback: OnProgress | None) -> None:
        self.name, self.total, self.start = name, total, start
        self.callback = callback
        self.samples: list[tuple[float, int]] = [(time.monotonic(), start)]
        self.last = 0.0

    def update(self, done: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if self.callback is None or (not force and now - self.last < 0.1):
            return
        self.last = now
        self.samples.append((now, done))
        self.samples = [s for s in self.samples if now - s[0] <= 5.0] or [(now, done)]
        t0, d0 = self.samples[0]
        speed = (done - d0) / (now - t0) if now > t0 else 0.0
        self.callback(Progress(self.name, done, self.total, speed, self.start))


class _Sink:
    """Writes and hashes the blocks on a thread of its own while the download
    reads the next ones from the network (hashlib and file writes let go of
    the interpreter lock), and has the bytes flushed to disk as they come
    (every ``FLUSH_EVERY``), so the fsync before the final rename is short.
    Blocks go over in batches of ``CHUNK`` bytes, at most ``QUEUED`` batches
    waiting in memory."""

    QUEUED = 16
    FLUSH_EVERY = 16 << 20

    def __init__(self, out: Any, digest: Any) -> None:
        self.out, self.digest = out, digest
        self.written = 0
        self.error: OSError | None = None
        self._queue: queue.Queue[bytes | None] = queue.Queue(self.QUEUED)
        self._batch: list[bytes] = []
        self._batched = 0
        self._flush = threading.Event()
        self._closing = False
        self._writer = threading.Thread(target=self._write, name="download writer", daemon=True)
        self._flusher = threading.Thread(target=self._sync, name="download flusher", daemon=True)
        self._writer.start()
        self._flusher.start()

    def put(self, block: bytes) -> None:
        if self.error is not None:
            raise self.error
        self._batch.append(block)
        self._batched += len(block)
        if self._batched >= CHUNK:
            self._hand_over()

    def _hand_over(self) -> None:
        if self._batch:
            self._queue.put(b"".join(self._batch))
            self._batch, self._batched = [], 0

    def close(self) -> None:
        """Wait until every block handed over is written (or writing failed)."""
        self._hand_over()
        self._queue.put(None)
        self._writer.join()
        self._closing = True
        self._flush.set()
        self._flusher.join()

    def _write(self) -> None:
        since = 0
        while (block := self._queue.get()) is not None:
            if self.error is not None:
                continue  # drain: the download stops at the next put
            try:
                self.out.write(block)
            except OSError as exc:
                self.error = exc
                continue
            self.digest.update(block)
            self.written += len(block)
            since += len(block)
            if since >= self.FLUSH_EVERY:
                since = 0
                self._flush.set()

    def _sync(self) -> None:
        sync = getattr(os, "fdatasync", os.fsync)
        while True:
            self._flush.wait()
            self._flush.clear()
            if self._closing:
                return
            with contextlib.suppress(OSError):  # only a head start: the final fsync decides
                sync(self.out.fileno())


def _new_digest(part: RemoteFile) -> Any:
    """sha256 for LFS files; for others git's blob hash (sha1 of a header and
    the content), which is what names them."""
    if part.sha256 or not part.blob_id:
        return hashlib.sha256()
    digest = hashlib.sha1(usedforsecurity=False)
    digest.update(f"blob {part.size}\0".encode())
    return digest


def _closed_early(name: str, done: int, size: int) -> DownloadError:
    return DownloadError(
        f"the server closed the connection early: {name} stopped at {human_size(done)} of "
        f"{human_size(size)} (kept: pull again to resume)"
    )


def _is_read_error(exc: BaseException) -> bool:
    import httpx2

    return isinstance(exc, httpx2.ReadError | httpx2.RemoteProtocolError | httpx2.ReadTimeout)


def _http_error(response: Any) -> Exception:
    """An exception huggingface-hub would raise for this response."""
    from huggingface_hub.utils import hf_raise_for_status

    with contextlib.suppress(Exception):
        response.read()
    try:
        hf_raise_for_status(response)
    except Exception as exc:
        return exc
    return HubError(f"the Hub answered {response.status_code}")
