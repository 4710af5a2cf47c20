"""Loading a model into the worker, and the model once loaded.

llama.cpp builds the model on the GPU or, failing that, the CPU, with the
weight layouts off that the parent asks for or this CPU is remembered to need
(``layouts.py``); the worker reads its chat template and tokenizer, applies a
LoRA adapter, and warms it up with a first decode: a layout that crashes on
this CPU crashes there, after the worker has said which were in play.
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import llama_cpp

from localchat.core.engine import cpu_layout, layouts
from localchat.core.engine.protocol import Load, LoadedModel, LoadStage, Message, Tool
from localchat.core.engine.template import ChatTemplate
from localchat.core.engine.worker.devices import (
    describe_backend,
    known_devices,
    load_with_gpu_fallback,
)
from localchat.core.engine.worker.flags import Flags
from localchat.core.engine.worker.llama_log import LlamaLog
from localchat.core.engine.worker.prompt_cache import PromptCache
from localchat.core.engine.worker.thinking import Thinking, thinking_of
from localchat.core.engine.worker.tokenizer import LlamaTokenizer
from localchat.core.errors import ModelLoadError
from localchat.core.hardware import physical_cores
from localchat.core.params import GenerationSettings, effective_ctx


@dataclass(eq=False)
class Model:
    """A loaded model: llama.cpp's object, its template and tokenizer, and the
    cache of its prompts' tokens."""

    llm: llama_cpp.Llama
    template: ChatTemplate
    tokenizer: LlamaTokenizer
    cache: PromptCache
    vocab_only: bool
    lora: Any = None
    """The LoRA adapter llama.cpp applies, if any (freed with the model)."""
    thinking: Thinking | None = None
    """How it thinks, for a reasoning model."""
    options: dict[str, Any] = field(default_factory=dict)
    """The template variables of the request in hand (thinking on or off,
    its effort), set by :meth:`use`; the next prompt evaluated ahead keeps
    them."""
    tools: tuple[Tool, ...] = ()
    """The functions the request in hand offers (kept likewise)."""

    def use(self, settings: GenerationSettings, tools: tuple[Tool, ...] = ()) -> None:
        """Render with the template variables ``settings`` set, and ``tools``."""
        self.options = self.thinking.options(settings) if self.thinking else {}
        self.tools = tools

    def render(self, messages: tuple[Message, ...], add_generation_prompt: bool = True) -> str:
        """The prompt the chat template makes of ``messages``."""
        return self.template.render(
            messages,
            add_generation_prompt=add_generation_prompt,
            options=self.options,
            tools=self.tools,
        )

    def tool_marker_tokens(self) -> frozenset[int]:
        """The control tokens that spell the tool format's markers (their
        text is then kept in a reply, for the calls to be parsed)."""
        found = set()
        for marker in self.template.tool_format.markers:
            tokens = self.tokenizer.tokenize(marker, add_bos=False, special=True)
            if len(tokens) == 1 and self.tokenizer.is_control(tokens[0]):
                found.add(tokens[0])
        return frozenset(found)

    def forget_cache(self) -> None:
        """Empty the KV cache (after scoring, say): the next turn starts afresh."""
        self.llm._ctx.kv_cache_clear()
        self.llm.reset()
        self.cache.forget()

    def close(self) -> None:
        if self.lora is not None:
            llama_cpp.llama_adapter_lora_free(self.lora)
            self.lora = None
        self.llm.close()


class Loader:
    """Loads models, reading llama.cpp's log as it does."""

    def __init__(self, log: LlamaLog, flags: Flags) -> None:
        self.log = log
        self.flags = flags

    def load(self, req: Load, say: Callable[[LoadStage], None]) -> tuple[Model, LoadedModel]:
        """Load a model the parent has checked (see ``Engine.load``), and warm
        it up with a first decode (see ``layouts.py``). ``say`` sends the
        parent each stage reached."""
        n_ctx = effective_ctx(req.n_ctx, req.n_ctx_train)
        threads = req.threads or physical_cores()
        offload = bool(llama_cpp.llama_supports_gpu_offload())
        layers = req.gpu_layers if offload else 0
        key = cpu_layout.platform_key()
        extras = tuple(cpu_layout.extra_buffer_types())
        off, why = req.layouts_off, req.layouts_reason
        if off is None:  # what this CPU and build need, if it is known
            known = layouts.LayoutMemory().get(key)
            off, why = (known.off, known.reason) if known else ((), "")
            off = tuple(name for name in off if name in extras)
        if off:  # llama.cpp places weights as our overrides say: say so first
            say(LoadStage(key, extras, off, (), decoding=False))
        llm, layers, notice = load_with_gpu_fallback(
            lambda n: self._construct(req, n_ctx, threads, n, off), layers
        )
        used = tuple(name for name in extras if name in self.log.weight_buffers)
        model: Model | None = None
        try:
            model = _read(llm, req.vocab_only)
            if not req.vocab_only:
                self.flags.abort_on_cancel(llm)
            model.cache.control_pattern()  # here, not in the first prompt's time
            if req.lora:
                self._apply_lora(model, req.lora, req.lora_scale)
            if not req.vocab_only:
                say(LoadStage(key, extras, off, used, decoding=True))
                _warm_up(model, used)
        except BaseException:
            if model is not None:
                model.close()
            else:
                llm.close()
            raise
        backend = describe_backend(known_devices(), layers)
        if backend == "CPU" and self.log.cpu_variant:
            backend += f" · {self.log.cpu_variant}"
        if off:
            backend += f" ({layouts.describe(off, why or 'turned off')})"
        loaded = LoadedModel(
            path=req.path,
            n_ctx=llm.n_ctx(),
            n_ctx_train=req.n_ctx_train,
            n_vocab=llm.n_vocab(),
            gpu_layers=layers,
            gpu_offload_supported=offload,
            threads=threads,
            template_source="gguf" if model.template.from_model else "fallback",
            kv_cache_bytes=self.log.buffers.get("kv", 0),
            compute_bytes=self.log.buffers.get("compute", 0),
            lora=req.lora,
            notice=notice,
            backend=backend,
            layouts_used=used,
            layouts_off=off,
            weight_bytes=tuple(self.log.weight_buffers.items()),
            cpu_variant=self.log.cpu_variant,
            reasoning=model.thinking.fmt.family if model.thinking else "",
            reasoning_controls=model.thinking.capabilities() if model.thinking else (),
            tool_format=model.template.tool_format.name,
        )
        return model, loaded

    def _construct(
        self, req: Load, n_ctx: int, threads: int, layers: int, off: tuple[str, ...]
    ) -> llama_cpp.Llama:
        n_batch = min(512, n_ctx)
        with self.log.load_report():
            try:
                with cpu_layout.turned_off(req.path, off, layers):
                    return llama_cpp.Llama(
                        model_path=req.path,
                        vocab_only=req.vocab_only,
                        n_ctx=n_ctx,
                        n_batch=n_batch,
                        n_ubatch=n_batch,
                        n_threads=threads,
                        n_threads_batch=threads,
                        n_gpu_layers=layers,
                        use_mmap=True,
                        use_mlock=False,
                        logits_all=False,
                        embedding=False,
                        offload_kqv=True,
                        flash_attn=False,
                        last_n_tokens_size=64,
                        verbose=False,
                    )
            except (ValueError, RuntimeError, OSError) as exc:
                reason = self.log.last_error() or str(exc)
                raise ModelLoadError(
                    f"llama.cpp could not load {Path(req.path).name}: {reason}"
                ) from None

    def _apply_lora(self, model: Model, path: str, scale: float) -> None:
        """Load and apply a LoRA adapter, checking what llama.cpp returns (a NULL
        adapter used anyway crashes at the first decode)."""
        name = Path(path).name
        self.log.lines.clear()
        adapter = llama_cpp.llama_adapter_lora_init(model.llm._model.model, path.encode())
        if not adapter:
            reason = self.log.last_error() or "llama.cpp rejected it"
            raise ModelLoadError(f"cannot load adapter {name}: {reason}")
        model.lora = adapter
        adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter)
        scales = (ctypes.c_float * 1)(scale)
        if llama_cpp.llama_set_adapters_lora(model.llm._ctx.ctx, adapters, 1, scales):
            raise ModelLoadError(f"cannot apply adapter {name}")


def _read(llm: llama_cpp.Llama, vocab_only: bool) -> Model:
    """The template and tokenizer of a model llama.cpp has built."""
    meta = llm.metadata
    bos, eos = llm.token_bos(), llm.token_eos()
    vocab = llm._model
    template = ChatTemplate(
        meta.get("tokenizer.chat_template"),
        bos_token=vocab.token_get_text(bos) if bos >= 0 else "",
        eos_token=vocab.token_get_text(eos) if eos >= 0 else "",
    )
    tokenizer = LlamaTokenizer(llm)
    return Model(
        llm,
        template,
        tokenizer,
        PromptCache(tokenizer, bos_text=template.bos_token),
        vocab_only,
        thinking=thinking_of(template, tokenizer),
    )


def _warm_up(model: Model, used: tuple[str, ...]) -> None:
    """The model's first decodes, as llama.cpp's tools warm a model up: a
    batch of eight tokens (the matrix kernels) and one token (the vector
    kernels), then an empty cache. A weight layout that crashes on this CPU
    crashes here, where the parent knows what to turn off."""
    llm = model.llm
    native = llm._model.model
    if llama_cpp.llama_model_has_encoder(native) or not llama_cpp.llama_model_has_decoder(native):
        return  # an encoder (embeddings, T5) is not decoded on its own
    crash = os.environ.get(layouts.CRASH_ENV)
    if crash and (crash in used or crash == "any"):  # fault injection (tests)
        os.kill(os.getpid(), signal.SIGSEGV)
    bos, eos = llm.token_bos(), llm.token_eos()
    first = bos if bos >= 0 else 0
    try:
        # 8: CPU_REPACK's matrix kernel starts at 4 rows, AMX's tiles at 2.
        llm.eval([first] + [eos if eos >= 0 else first] * 7)
        llm.eval([first])
    except RuntimeError as exc:
        raise ModelLoadError(f"llama.cpp could not run the model: {exc}") from None
    finally:
        model.forget_cache()
