"""The Hugging Face Hub: find GGUF model repositories and list their models.

Metadata and addresses come from huggingface-hub (``HfApi``), so
``HF_ENDPOINT``, ``HF_TOKEN`` (gated repos) and proxy settings apply as in
every Hub tool, and TLS stays verified. What is listed here (a
:class:`RemoteModel`: its files, sizes and sha256) is what
:mod:`localchat.core.models.transfer` downloads; errors from either become one
line with :func:`hub_error`. Before the Hub is asked, :func:`check_reachable`
makes sure its host can be reached at all (:mod:`.network`): offline, a
search fails in a second or two with one line, instead of after
huggingface-hub's retries.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Literal

from localchat.core.errors import LocalChatError
from localchat.core.models import network
from localchat.core.models.library import SPLIT

QUANT = re.compile(
    r"(?<![A-Za-z0-9])("
    r"IQ[1-4]_(?:XXS|XS|S|M|NL)|Q[2-8]_K(?:_XL|_[SML])?|Q4_0_[48]_[48]|Q[4-8]_[01]|"
    r"TQ[12]_0|MXFP4|BF16|F16|FP16|F32"
    r")(?![A-Za-z0-9])",
    re.IGNORECASE,
)
Sort = Literal["downloads", "likes", "recent"]
SORTS: dict[str, str] = {"downloads": "downloads", "likes": "likes", "recent": "last_modified"}


UNREACHABLE = "the Hugging Face Hub cannot be reached (no network?)"


class HubError(LocalChatError):
    """The Hub could not be reached or refused (offline, gated, missing...)."""


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

    check_reachable()
    return HfApi(endpoint=endpoint())


def check_reachable() -> None:
    """Raise a one-line :class:`HubError` at once (within
    :data:`.network.TIMEOUT`) when the Hub's host cannot be reached; also
    keeps huggingface-hub's retry warnings off the terminal."""
    from huggingface_hub import constants

    network.quiet_retries()
    if constants.is_offline_mode():
        return  # huggingface-hub says so itself, without the network
    reason = network.problem(endpoint())
    if reason is not None:
        raise HubError(f"{UNREACHABLE}: {reason}")


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
        return HubError(f"{UNREACHABLE}: {endpoint()}: {_reason(exc)}")
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
        check_path(repo_id, path)
        if PurePosixPath(path).name.lower().startswith("mmproj"):
            continue
        lfs = getattr(entry, "lfs", None)
        found.append(RemoteFile(path, int(entry.size), lfs.sha256 if lfs else None, entry.blob_id))
    return group(repo_id, commit, found)


def check_path(repo_id: str, path: str) -> None:
    """Refuse a repository path that would not land as a plain file name in
    the models folder (absolute, ``..``, backslashes, hidden)."""
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
