"""The parent's side of loading a model: the files checked before the worker
sees them, the request made, and loading again with a weight layout off when
the model's first decode crashes the worker (see ``layouts.py``)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

from localchat.core.engine import layouts
from localchat.core.engine.gguf_info import ModelInfo, read_model_info
from localchat.core.engine.protocol import Load, LoadedModel, LoadStage
from localchat.core.errors import EngineCrashed, ModelFileError, ModelLoadError
from localchat.core.models import fingerprint
from localchat.core.params import GenerationSettings

log = logging.getLogger(__name__)


def load_request(
    path: str | Path,
    settings: GenerationSettings,
    *,
    lora: str | Path | None = None,
    vocab_only: bool = False,
    layouts_off: tuple[str, ...] | None = None,
) -> Load:
    """The request to load the model at ``path``, its file (and the
    adapter's) checked first, so a bad file is a one-line
    :class:`ModelFileError`, not a crash."""
    info = read_model_info(path)
    if info.file_kind == "adapter":
        raise ModelFileError(
            f"{info.path.name} is a LoRA adapter, not a model: pass it with --lora"
        )
    if lora is not None:
        _check_adapter(read_model_info(lora), info)
    return Load(
        path=str(info.path.resolve()),
        n_ctx_train=info.context_length,
        n_ctx=settings.ctx,
        gpu_layers=settings.gpu_layers,
        threads=settings.threads,
        lora=str(Path(lora).expanduser().resolve()) if lora is not None else None,
        lora_scale=settings.lora_scale,
        vocab_only=vocab_only,
        layouts_off=layouts_off,
        layouts_reason="turned off on request" if layouts_off else "",
    )


@dataclasses.dataclass(frozen=True)
class Attempt:
    """One try at a load: the model loaded, or the crash that ended the
    worker and how it ended; and the last stage the worker said it reached."""

    loaded: LoadedModel | None
    stage: LoadStage | None
    crash: EngineCrashed | None = None
    exit_code: int | None = None


def load_falling_back(req: Load, attempt: Callable[[Load], Attempt]) -> tuple[Load, LoadedModel]:
    """``attempt(req)``; when the worker dies at the model's first decode (or
    while loading with some weight layouts off), again with the suspect
    layout off, and remember what worked (see ``layouts.py``). Returns the
    request that worked and what it loaded."""
    fell_back = False
    while True:
        tried = attempt(req)
        if tried.loaded is not None:
            break
        assert tried.crash is not None
        stage = tried.stage
        if stage is None or not layouts.is_crash(tried.exit_code):
            raise tried.crash  # not a fault in the process (killed: out of memory, say)
        off = layouts.next_off(stage.off, stage.used, stage.extras, decoded=stage.decoding)
        if off is None:
            raise tried.crash
        when = "its first decode" if stage.decoding else "loading"
        ended = layouts.describe_exit(tried.exit_code)
        reason = f"it crashed at {when} on this CPU ({ended})"
        log.warning(
            "%s crashed the worker (%s) at %s with weight layouts %s in use; "
            "loading again with %s off",
            Path(req.path).name,
            ended,
            when,
            ", ".join(stage.used) or "none",
            ", ".join(off),
        )
        req = dataclasses.replace(req, layouts_off=off, layouts_reason=reason)
        fell_back = True
    if fell_back and tried.stage is not None:
        layouts.LayoutMemory().put(
            tried.stage.key,
            req.layouts_off or (),
            req.layouts_reason,
            model=Path(req.path).name,
        )
    return req, tried.loaded


def _check_adapter(adapter: ModelInfo, model: ModelInfo) -> None:
    """A LoRA adapter must be one, and for the model's architecture."""
    name = adapter.path.name
    if adapter.file_kind != "adapter" or adapter.metadata.get("adapter.type") != "lora":
        raise ModelFileError(f"{name} is not a LoRA adapter")
    if adapter.architecture != model.architecture:
        raise ModelLoadError(
            f"{name} is an adapter for {adapter.architecture} models, not {model.architecture}"
        )
    expected = str(adapter.metadata.get("localchat.lora.base.sha256") or "")
    if expected and fingerprint.sha256(model.path) != expected:
        base = str(adapter.metadata.get("localchat.lora.base.file") or "another model")
        same_name = base == model.path.name
        raise ModelLoadError(
            f"{name} was trained on {base}"
            + (" (a different file of that name)" if same_name else "")
            + f", not on {model.path.name}: it works only with the model it was trained on"
        )
