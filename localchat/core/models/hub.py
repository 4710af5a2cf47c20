"""The Hugging Face Hub: find GGUF models, list their files, download them.

Metadata and addresses come from huggingface-hub (``HfApi``, ``hf_hub_url``,
its HTTP session), so ``HF_ENDPOINT``, ``HF_TOKEN`` (gated repos) and proxy
settings apply as in every Hub tool, and TLS stays verified.

Downloads are ours, because huggingface-hub deletes its temporary file when a
download fails: each file goes to ``NAME.part`` in the models folder, next to
``NAME.part.json`` (where it comes from, its size and sha256), and a later pull
of the same file continues with an HTTP Range request. The sha256 is computed
while the bytes arrive (on resume, over the bytes already there first), checked
against the Hub's LFS sha256, and only then is the file renamed into place; for
a split model, the first part (the one that is listed and loaded) is renamed
last. A ``.part`` is never listed as a model.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import queue
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from localchat.core import paths
from localchat.core.errors import LocalChatError
from localchat.core.models.library import SPLIT
from localchat.core.units import human_size

CHUNK = 1 << 20
DISK_MARGIN = 64 << 20
"""Free space kept beyond what a download needs."""

QUANT = re.compile(
    r"(?<![A-Za-z0-9])("
    r"IQ[1-4]_(?:XXS|XS|S|M|NL)|Q[2-8]_K(?:_XL|_[SML])?|Q4_0_[48]_[48]|Q[4-8]_[01]|"
    r"TQ[12]_0|MXFP4|BF16|F16|FP16|F32"
    r")(?![A-Za-z0-9])",
    re.IGNORECASE,
)
Sort = Literal["downloads", "likes", "recent"]
SORTS: dict[str, str] = {"downloads": "downloads", "likes": "likes", "recent": "last_modified"}


class HubError(LocalChatError):
    """The Hub could not be reached or refused (offline, gated, missing...)."""


class DownloadError(LocalChatError):
    """A download failed; what is on disk is kept where it can be resumed."""


class DownloadStopped(LocalChatError):
    """Paused or cancelled by the user."""


def parse_quant(name: str) -> str:
    """The quantization in a GGUF file name (``Q4_K_M``, ``IQ3_XS``, ``F16``...),
    upper-cased; ``?`` when the name does not say."""
    matches = QUANT.findall(PurePosixPath(name).name)
    return matches[-1].upper() if matches else "?"


@dataclass(frozen=True)
class RemoteFile:
    path: str
    """Path in the repository."""
    size: int
    sha256: str | None
    """The LFS sha256 (None for a file not stored with LFS)."""
    blob_id: str | None = None
    """Git's blob hash, which names a file not stored with LFS."""


@dataclass(frozen=True)
class RemoteModel:
    """One downloadable model: a GGUF file, or all the parts of a split one."""

    repo_id: str
    revision: str
    parts: tuple[RemoteFile, ...]

    @property
    def name(self) -> str:
        """The file name it is installed under (the first part's)."""
        return PurePosixPath(self.parts[0].path).name

    @property
    def quant(self) -> str:
        return parse_quant(self.parts[0].path)

    @property
    def size(self) -> int:
        return sum(p.size for p in self.parts)

    @property
    def split(self) -> bool:
        return len(self.parts) > 1


@dataclass(frozen=True)
class RepoSummary:
    repo_id: str
    downloads: int
    likes: int
    last_modified: str
    gated: bool


def _api() -> Any:
    from huggingface_hub import HfApi  # imported on use: it is slow to import

    return HfApi(endpoint=endpoint())


def endpoint() -> str:
    """The Hub's address: ``HF_ENDPOINT`` as it is now (huggingface-hub reads
    it once, at import), else huggingface-hub's default."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or str(constants.ENDPOINT)).rstrip("/")


def hub_error(exc: BaseException, repo_id: str, filename: str | None = None) -> LocalChatError:
    """A one-line error for what huggingface-hub or the HTTP layer raised."""
    import httpx2
    from huggingface_hub import errors

    page = f"{endpoint()}/{repo_id}"
    if isinstance(exc, LocalChatError):
        return exc
    gated = HubError(
        f"{repo_id} is gated: accept its terms at {page} while logged in, then set "
        "HF_TOKEN to an access token (huggingface.co/settings/tokens) and try again"
    )
    if isinstance(exc, errors.GatedRepoError):
        return gated
    if isinstance(exc, errors.RepositoryNotFoundError):
        return HubError(f"no model repository {repo_id} on the Hub (a private one needs HF_TOKEN)")
    if _status(exc) in (401, 403):
        return gated
    if isinstance(exc, errors.RevisionNotFoundError):
        return HubError(f"{repo_id} has no such revision")
    if isinstance(exc, errors.EntryNotFoundError) or _status(exc) == 404:
        what = f"no file {filename}" if filename else "no such file"
        return HubError(f"{repo_id} has {what}")
    if isinstance(exc, errors.OfflineModeIsEnabled):
        return HubError("HF_HUB_OFFLINE is set: the Hub is not asked (unset it to download)")
    if isinstance(exc, httpx2.ConnectError | httpx2.ConnectTimeout):
        return HubError(f"cannot reach {endpoint()}: are you offline? ({_reason(exc)})")
    if isinstance(exc, httpx2.TimeoutException):
        return HubError(f"{endpoint()} did not answer in time; try again")
    if isinstance(exc, errors.HfHubHTTPError):
        return HubError(f"the Hub refused ({_status(exc) or 'error'}): {_reason(exc)}")
    if isinstance(exc, httpx2.HTTPError):
        return HubError(f"talking to {endpoint()} failed: {_reason(exc)}")
    return HubError(f"{type(exc).__name__}: {_reason(exc)}")


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _reason(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


# -- search and files -------------------------------------------------------------


def search(query: str, *, sort: Sort = "downloads", limit: int = 20) -> list[RepoSummary]:
    """GGUF model repositories matching ``query``, most downloaded (or liked,
    or recently changed) first."""
    if sort not in SORTS:
        raise HubError(f"sort by one of {', '.join(SORTS)}")
    try:
        found = list(
            _api().list_models(search=query or None, filter="gguf", sort=SORTS[sort], limit=limit)
        )
    except Exception as exc:
        raise hub_error(exc, query) from None
    return [
        RepoSummary(
            repo_id=m.id,
            downloads=m.downloads or 0,
            likes=m.likes or 0,
            last_modified=m.last_modified.isoformat() if m.last_modified else "",
            gated=bool(m.gated),
        )
        for m in found
    ]


def files(repo_id: str, *, revision: str | None = None) -> list[RemoteModel]:
    """The GGUF models in a repository, split files grouped as one, smallest
    first. Files that are not models (vision projectors) are left out; a path
    that would land outside the models folder is refused."""
    try:
        api = _api()
        commit = revision or api.model_info(repo_id).sha or "main"
        entries = list(api.list_repo_tree(repo_id, recursive=True, revision=commit, expand=True))
    except Exception as exc:
        raise hub_error(exc, repo_id) from None
    found: list[RemoteFile] = []
    for entry in entries:
        path = getattr(entry, "path", "")
        if not path.lower().endswith(".gguf") or not hasattr(entry, "size"):
            continue
        _check_path(repo_id, path)
        if PurePosixPath(path).name.lower().startswith("mmproj"):
            continue
        lfs = getattr(entry, "lfs", None)
        found.append(RemoteFile(path, int(entry.size), lfs.sha256 if lfs else None, entry.blob_id))
    return group(repo_id, commit, found)


def _check_path(repo_id: str, path: str) -> None:
    p = PurePosixPath(path)
    if p.is_absolute() or ".." in p.parts or "\\" in path or not p.name or p.name.startswith("."):
        raise HubError(f"{repo_id} lists a file {path!r} that would land outside the models folder")


def group(repo_id: str, revision: str, found: Iterable[RemoteFile]) -> list[RemoteModel]:
    """Single files as they are; the parts of a split file together, in order,
    and only when every part is there."""
    singles: list[RemoteModel] = []
    splits: dict[tuple[str, str], dict[int, RemoteFile]] = {}
    counts: dict[tuple[str, str], int] = {}
    for f in found:
        m = SPLIT.search(f.path)
        if m is None:
            singles.append(RemoteModel(repo_id, revision, (f,)))
            continue
        key = (f.path[: m.start()], m[2])
        splits.setdefault(key, {})[int(m[1])] = f
        counts[key] = int(m[2])
    for key, parts in splits.items():
        if sorted(parts) == list(range(1, counts[key] + 1)):
            singles.append(RemoteModel(repo_id, revision, tuple(parts[i] for i in sorted(parts))))
    return sorted(singles, key=lambda m: (m.size, m.name))


def choose(models: list[RemoteModel], *, filename: str | None, quant: str | None) -> RemoteModel:
    """The model a pull means: a file name (any part's, or its path), else a
    quantization, else the repository's only model."""
    if filename:
        for m in models:
            if any(filename in (p.path, PurePosixPath(p.path).name) for p in m.parts):
                return m
        raise HubError(f"no GGUF file {filename} in {models[0].repo_id if models else 'the repo'}")
    if not models:
        raise HubError("the repository has no GGUF model files")
    if quant:
        matching = [m for m in models if m.quant == quant.upper()]
        if not matching:
            have = ", ".join(sorted({m.quant for m in models}))
            raise HubError(f"no {quant.upper()} file in {models[0].repo_id}; it has: {have}")
        if len(matching) > 1:
            names = ", ".join(m.name for m in matching)
            raise HubError(f"several {quant.upper()} files: {names}; name one")
        return matching[0]
    if len(models) > 1:
        have = ", ".join(sorted({m.quant for m in models}))
        raise HubError(
            f"{models[0].repo_id} has {len(models)} models ({have}): pass --quant or a file name"
        )
    return models[0]


# -- downloads --------------------------------------------------------------------


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
        _check_path(model.repo_id, part.path)
    target = folder / model.name
    if target.exists():
        raise DownloadError(f"{model.name} is already installed")
    partials = [folder / (PurePosixPath(p.path).name + ".part") for p in model.parts]
    have = [_resumable(pp, model, p) for pp, p in zip(partials, model.parts, strict=True)]
    _check_space(folder, model, sum(have))
    meter = _Meter(model.name, model.size, sum(have), on_progress)
    done_before = 0
    for part, partial, already in zip(model.parts, partials, have, strict=True):
        _fetch(model, part, partial, already, done_before, meter, control or Control())
        done_before += part.size
    # Every part is whole and verified: install them, the first one last.
    for partial in reversed(partials):
        final = partial.with_suffix("")  # drop ".part"
        os.replace(partial, final)
        _sidecar(partial).unlink(missing_ok=True)
    return target


def _open_part(partial: Path) -> Any:
    return partial.open("ab")


def _sidecar(partial: Path) -> Path:
    return partial.with_name(partial.name + ".json")


IDENTITY = ("repo_id", "path", "size", "sha256")
"""What makes a ``.part`` the same file (the revision may move on, the file not)."""


def _resumable(partial: Path, model: RemoteModel, part: RemoteFile) -> int:
    """Bytes of ``part`` already on disk from an earlier try of the same file
    (0, and the leftovers removed, when it was another version or is broken)."""
    meta = {
        "repo_id": model.repo_id,
        "path": part.path,
        "size": part.size,
        "sha256": part.sha256,
        "blob_id": part.blob_id,
        "revision": model.revision,
    }
    try:
        saved = json.loads(_sidecar(partial).read_text(encoding="utf-8"))
        size = partial.stat().st_size if partial.exists() else 0
        same = all(saved[k] == meta[k] for k in IDENTITY)
    except (OSError, ValueError, KeyError, TypeError):
        same, size = False, 0
    if not same or size > part.size:
        partial.unlink(missing_ok=True)
        _sidecar(partial).write_text(json.dumps(meta), encoding="utf-8")
        return 0
    return size


def interrupted(folder: Path | None = None) -> list[tuple[RemoteModel, int]]:
    """Downloads an earlier run left unfinished in the models folder (from
    their ``.part.json`` sidecars), with the bytes already there: what a
    window can offer to resume, without asking the Hub."""
    folder = folder or paths.models_dir()
    by_repo: dict[tuple[str, str], list[RemoteFile]] = {}
    have: dict[str, int] = {}
    for sidecar in sorted(folder.glob("*.part.json")):
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
            repo_id, path = str(meta["repo_id"]), str(meta["path"])
            part = RemoteFile(path, int(meta["size"]), meta["sha256"], meta.get("blob_id"))
            revision = str(meta.get("revision") or "main")
            _check_path(repo_id, path)
        except (OSError, ValueError, KeyError, TypeError, HubError):
            continue  # not ours, or broken: a pull of that file starts it again
        if PurePosixPath(path).name + ".part.json" != sidecar.name:
            continue
        by_repo.setdefault((repo_id, revision), []).append(part)
        partial = sidecar.with_name(sidecar.name.removesuffix(".json"))
        have[path] = partial.stat().st_size if partial.exists() else 0
    found: list[tuple[RemoteModel, int]] = []
    for (repo_id, revision), parts in by_repo.items():
        for model in group(repo_id, revision, parts):
            found.append((model, sum(min(have[p.path], p.size) for p in model.parts)))
    return found


def discard(model: RemoteModel, folder: Path | None = None) -> None:
    """Delete what an unfinished download of ``model`` left (``.part`` files
    and their sidecars); installed files are not touched."""
    folder = folder or paths.models_dir()
    for part in model.parts:
        partial = folder / (PurePosixPath(part.path).name + ".part")
        partial.unlink(missing_ok=True)
        _sidecar(partial).unlink(missing_ok=True)


def _check_space(folder: Path, model: RemoteModel, have: int) -> None:
    need = model.size - have
    free = shutil.disk_usage(folder).free
    if need + DISK_MARGIN > free:
        raise DownloadError(
            f"not enough disk space for {model.name}: it needs {human_size(need)} more, "
            f"{human_size(free)} is free in {folder}"
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


def _fetch(
    model: RemoteModel,
    part: RemoteFile,
    partial: Path,
    have: int,
    offset: int,
    meter: _Meter,
    control: Control,
) -> None:
    """Bring ``partial`` to the whole of ``part`` and verify it."""
    from huggingface_hub import get_session, hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    name = PurePosixPath(part.path).name
    digest = _new_digest(part)
    if have:
        with partial.open("rb") as f:  # the bytes already here, hashed once
            while block := f.read(CHUNK):
                digest.update(block)
    done = have
    if done < part.size:
        url = hf_hub_url(model.repo_id, part.path, revision=model.revision, endpoint=endpoint())
        headers = build_hf_headers()
        if done:
            headers["Range"] = f"bytes={done}-"
        try:
            with (
                get_session().stream(
                    "GET", url, headers=headers, follow_redirects=True, timeout=30.0
                ) as response,
                _open_part(partial) as out,
            ):
                if response.status_code >= 400:
                    raise hub_error(_http_error(response), model.repo_id, part.path)
                if done and response.status_code != 206:  # the server sent it all again
                    out.truncate(0)
                    out.seek(0)
                    digest, done = _new_digest(part), 0
                sink = _Sink(out, digest)
                received = done
                try:
                    for block in response.iter_bytes():  # as they arrive: a pause is quick
                        if control.stopped:
                            break
                        if received + len(block) > part.size:
                            raise DownloadError(f"the server sent more than {name}'s size")
                        sink.put(block)
                        received += len(block)
                        meter.update(offset + received)
                finally:
                    sink.close()
                    done += sink.written
                if sink.error is not None:
                    raise sink.error
                out.flush()
                os.fsync(out.fileno())
        except LocalChatError:
            raise
        except OSError as exc:  # writing
            if exc.errno == errno.ENOSPC:
                raise DownloadError(
                    f"the disk is full: {name} stopped at {human_size(done)} of "
                    f"{human_size(part.size)} (kept: free some space and pull again to resume)"
                ) from None
            raise DownloadError(f"cannot write {partial}: {exc.strerror or exc}") from None
        except Exception as exc:  # reading
            if _is_read_error(exc):
                raise _closed_early(name, done, part.size) from None
            raise hub_error(exc, model.repo_id, part.path) from None
    if control.stopped:
        meter.update(offset + done, force=True)
        if control.mode == "cancel":
            partial.unlink(missing_ok=True)
            _sidecar(partial).unlink(missing_ok=True)
            raise DownloadStopped(f"cancelled {name}; nothing kept")
        raise DownloadStopped(
            f"paused {name} at {human_size(done)} of {human_size(part.size)}; pull again to resume"
        )
    if done < part.size:
        raise _closed_early(name, done, part.size)
    meter.update(offset + done, force=True)
    expected = (part.sha256 or part.blob_id or "").lower()
    if expected and digest.hexdigest() != expected:
        partial.unlink(missing_ok=True)
        _sidecar(partial).unlink(missing_ok=True)
        raise DownloadError(
            f"{name} failed its checksum (not the Hub's sha256): the download was deleted; "
            "pull again to retry"
        )


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
