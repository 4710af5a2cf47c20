"""The messages between the engine client (parent) and the worker process.

Requests go parent -> worker over a pipe, one at a time; the worker answers each
with exactly one final message (a result or :class:`Failed`), and a chat request
also with :class:`Piece` messages before its :class:`ChatResult`. Cancelling
does not use the pipe: the parent sets a byte of shared memory, which the
worker reads at every token and llama.cpp reads, through its abort callback,
during every decode; the parent clears it before sending the next request.
Before sending one, the parent sets another byte (the worker clears it on
receiving the request), which stops the worker's evaluation of the next
prompt's start between turns. :class:`Flag` names the bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Literal, NotRequired, TypedDict

from localchat.core.params import GenerationSettings


class Message(TypedDict):
    """One chat message, as chat templates expect it."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str
    reasoning: NotRequired[str]
    """An assistant message's thinking, apart from its answer (``content``):
    the template gets it in the field it reads, if any (``reasoning_content``,
    ``thinking``), never as part of the content."""
    tool_calls: NotRequired[list[dict[str, Any]]]
    """An assistant message's calls, in OpenAI's shape (``id``, ``type``,
    ``function`` with ``name`` and ``arguments``)."""
    tool_call_id: NotRequired[str]
    """A tool message's: the call it answers."""
    name: NotRequired[str]
    """A tool message's: the function that answered."""


Tool = dict[str, Any]
"""A function the model may call, in OpenAI's shape: ``{"type": "function",
"function": {"name", "description", "parameters"}}``."""


# -- shared memory ---------------------------------------------------------------


class Flag(IntEnum):
    """The bytes of shared memory (:data:`FLAG_BYTES` of them) the parent sets
    and the worker reads, by index. llama.cpp's abort callback is libc's
    ``strlen`` on a flag's byte, so the byte after each flag stays 0."""

    CANCEL = 0
    """Set: stop the request in flight. The parent sets it to cancel and
    clears it before sending the next request."""
    REQUEST_WAITING = 2
    """Set: a request is being sent, until the worker has it (the parent sets
    it before sending, the worker clears it on receiving). It preempts
    evaluating ahead between turns, even while a big request is still in the
    pipe."""


FLAG_BYTES = 4
"""The size of the shared memory: each flag and the 0 byte after it."""


# -- requests ------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """Load a model file the parent has already checked (whole, a GGUF model,
    any adapter matching it), with the facts it read from the header."""

    path: str
    n_ctx_train: int
    n_ctx: int
    gpu_layers: int
    threads: int
    lora: str | None = None
    lora_scale: float = 1.0
    vocab_only: bool = False
    layouts_off: tuple[str, ...] | None = None
    """llama.cpp's extra buffer types (weight layouts) to leave out, e.g.
    ("AMX",); None: what this CPU and build are remembered to need (see
    ``layouts.py``)."""
    layouts_reason: str = ""
    """Why ``layouts_off`` are off, in words for the user."""


@dataclass(frozen=True)
class Unload:
    pass


@dataclass(frozen=True)
class Info:
    """What is loaded: answered with :class:`LoadedModel`, or :class:`Ok` when nothing is."""


@dataclass(frozen=True)
class Tokenize:
    text: str
    add_bos: bool = False
    special: bool = True


@dataclass(frozen=True)
class RenderChat:
    """Render messages with the model's chat template and count the tokens."""

    messages: tuple[Message, ...]
    add_generation_prompt: bool = True


@dataclass(frozen=True)
class Chat:
    messages: tuple[Message, ...]
    settings: GenerationSettings
    stop: tuple[str, ...] = ()
    logprobs: bool = False
    """Return every generated token with its log-probability (``ChatResult.tokens``)."""
    top_logprobs: int = 0
    """... and this many most likely candidates at its position, with theirs
    (at most :data:`MAX_TOP_LOGPROBS`; more than 0 implies ``logprobs``).
    Neither: nothing is read, at no cost."""
    prefix: tuple[int, ...] = ()
    """Tokens the reply starts with, placed rather than sampled ("continue
    with this instead": an earlier reply's tokens up to a position, then the
    token the user chose); they stream and count as the reply's, marked
    ``forced`` in its tokens. The model samples on from there."""
    grammar: str | None = None
    """A GBNF grammar (llama.cpp's format, root rule ``root``) the answer
    must follow, enforced while sampling: structured output, e.g. JSON from
    ``json_grammar.py``. A reasoning model thinks freely first; the grammar
    holds from the end of its thinking. A reply that ends by itself
    (``finish_reason`` "stop") is complete under it; one cut short
    ("length", "context", "cancelled") is only a prefix of a valid text.
    A grammar llama.cpp cannot parse is an :class:`EngineError`."""
    stream_logprobs: bool = False
    """With ``logprobs``: each piece carries its tokens' log-probabilities
    (``Piece.tokens``) as they go out, for a client that streams them."""
    raw: str | None = None
    """A prompt given as text (OpenAI's ``/v1/completions``), completed as
    it is, in place of ``messages``: no chat template, no thinking told
    apart (its special tokens' text is read as those tokens)."""
    tools: tuple[Tool, ...] = ()
    """Functions the model may call: rendered by its chat template (or, for
    a template without tools, described in a system prompt), their markers
    kept in the reply's text for the caller to parse (``tools/formats.py``,
    in the format ``LoadedModel.tool_format`` names)."""


MAX_TOP_LOGPROBS = 20


@dataclass(frozen=True)
class PlanContext:
    """What the model would see of these messages if they were sent now: the
    chat's overflow policy applied, counted exactly, nothing generated."""

    messages: tuple[Message, ...]
    settings: GenerationSettings
    tools: tuple[Tool, ...] = ()


@dataclass(frozen=True)
class ShowPrompt:
    """The exact prompt the model would read for these messages now (the
    prompt X-ray): the overflow policy applied, the system prompt in, every
    token with its text."""

    messages: tuple[Message, ...]
    settings: GenerationSettings
    tools: tuple[Tool, ...] = ()


@dataclass(frozen=True)
class Perplexity:
    """How well the loaded model predicts a text (or token ids): each window of
    ``window + 1`` tokens (0: the context size) predicts its last ``window``
    tokens from the ones before them, windows not overlapping."""

    text: str | None = None
    tokens: tuple[int, ...] | None = None
    window: int = 0
    max_windows: int = 0
    """Score at most this many windows (0: all)."""


@dataclass(frozen=True)
class Score:
    """Perplexity over separate token sequences, each evaluated from an empty
    cache, counting only the marked tokens (``learn[i][j]``: token ``j`` of
    sequence ``i`` is scored): a fine-tune's held-out replies, for one."""

    sequences: tuple[tuple[int, ...], ...]
    learn: tuple[tuple[bool, ...], ...]


@dataclass(frozen=True)
class Logits:
    """The model's raw next-token scores at every position of ``tokens``
    (evaluated from an empty cache): what a tinkerer or a test compares."""

    tokens: tuple[int, ...]


@dataclass(frozen=True)
class LoadEmbedder:
    """Load an embedding model beside the chat model (replacing any other
    embedding model): answered with :class:`EmbedderLoaded`."""

    path: str
    n_ctx: int = 512
    """The longest text it embeds, in tokens (a longer one is cut)."""
    threads: int = 2


@dataclass(frozen=True)
class Embed:
    """Vectors for texts (answered with :class:`Embeddings`), from the
    embedding model loaded with :class:`LoadEmbedder`."""

    texts: tuple[str, ...]


@dataclass(frozen=True)
class Shutdown:
    pass


Request = (
    Load
    | Unload
    | Info
    | Tokenize
    | RenderChat
    | Chat
    | PlanContext
    | ShowPrompt
    | Perplexity
    | Score
    | Logits
    | LoadEmbedder
    | Embed
    | Shutdown
)


@dataclass(frozen=True)
class Envelope:
    id: int
    request: Request


# -- replies -------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedModel:
    """What the worker reports about the model it loaded."""

    path: str
    n_ctx: int
    """The context size in use (the setting rounded and capped)."""
    n_ctx_train: int
    n_vocab: int
    gpu_layers: int
    """Layers asked of the GPU after any fallback (0 when running on the CPU)."""
    gpu_offload_supported: bool
    threads: int
    template_source: Literal["gguf", "fallback"]
    kv_cache_bytes: int = 0
    """The KV cache llama.cpp allocated (from its load report)."""
    compute_bytes: int = 0
    """llama.cpp's compute buffers (from its load report)."""
    lora: str | None = None
    notice: str | None = None
    """Something the user should know, e.g. that GPU offload failed and the
    model runs on the CPU instead."""
    backend: str = "CPU"
    """What it runs on: "CPU", or the GPU backend and device, e.g. "CUDA ·
    NVIDIA GeForce RTX 4090" or "Metal · Apple M2"; with a weight layout
    turned off, that too and why (one line)."""
    layouts_used: tuple[str, ...] = ()
    """The extra buffer types (weight layouts) that hold weights, e.g.
    ("CPU_REPACK",)."""
    layouts_off: tuple[str, ...] = ()
    """Those turned off for this CPU and build."""
    cpu_variant: str = ""
    """Which of llama.cpp's CPU builds runs it, where a build ships several
    (the installers: "sse42", "haswell", "zen4", "sapphirerapids"...); empty
    for one built for this machine."""
    weight_bytes: tuple[tuple[str, int], ...] = ()
    """The weights' bytes per buffer type, e.g. (("CPU_Mapped", ...),
    ("CPU_REPACK", ...)), from llama.cpp's load report (to 0.01 MiB)."""
    reasoning: str = ""
    """How the model thinks, for a reasoning model: "think" (``<think>``
    tags), "think-brackets", "harmony" (gpt-oss), "channel" (Gemma 4),
    "final-marker" (Apriel); empty for a model that does not."""
    reasoning_controls: tuple[str, ...] = ()
    """What its template lets the user set: "thinking" (a budget, for any
    reasoning model), "thinking_switch" (on or off), "reasoning_effort"."""
    tool_format: str = "generic"
    """How it writes tool calls (``tools/formats.py``): "hermes", "qwen-xml",
    "llama3", "mistral", "mistral-args", "gemma4", or "generic" (a template
    without tools: our system prompt teaches Hermes' format)."""


@dataclass(frozen=True)
class LoadStage:
    """Sent while loading, before llama.cpp reads the weights with some
    layouts off (``decoding`` false) and just before the model's first decode,
    its warm-up (``decoding`` true): the platform key (CPU and llama.cpp
    build), the extra buffer types the build offers, those turned off and
    those holding weights. If the process dies after this, the parent knows
    which layouts were in play."""

    key: str
    extras: tuple[str, ...]
    off: tuple[str, ...]
    used: tuple[str, ...]
    decoding: bool


@dataclass(frozen=True)
class Tokens:
    ids: tuple[int, ...]


@dataclass(frozen=True)
class Rendered:
    text: str
    n_tokens: int


@dataclass(frozen=True)
class Piece:
    """Streamed reply text: always whole UTF-8 characters; ``reasoning``
    for the model's thinking, else the answer."""

    text: str
    reasoning: bool = False
    tokens: tuple[TokenLogprob, ...] = ()
    """With ``Chat.stream_logprobs``: the answer's tokens whose text has
    gone out (in this piece or before), each with its log-probability and
    top candidates (no ``sampled``: that is the result's)."""


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token as the model chose it: its log-probability under
    the model (log-softmax of the raw logits: temperature 1, before any
    sampler, as OpenAI's ``logprobs``) and the most likely candidates at its
    position, most probable first, as (id, text, logprob)."""

    id: int
    text: str
    """What the token wrote: joined, the tokens' texts give the text the
    model wrote (a character split across tokens is in the token that
    completes it; for a reasoning model, its markers too)."""
    logprob: float
    top: tuple[tuple[int, str, float], ...] = ()
    reasoning: bool = False
    """Written while the model was thinking."""
    forced: bool = False
    """Written by the engine, not sampled (the closing marker of a thinking
    budget): its logprob is 0 and it has no candidates."""
    lse: float = 0.0
    """The position's log-normaliser: a logprob plus it is the raw logit
    (the repetition penalty acts on raw logits: see ``sampling.py``)."""
    sampled: tuple[tuple[int, float], ...] = ()
    """The distribution the token was drawn from: (id, probability) of the
    tokens the sampler chain kept, at the reply's settings, most probable
    first (at most :data:`MAX_SAMPLED`); exact when top-k limited it."""


MAX_SAMPLED = 64
"""The most kept tokens a position records (the rest, if any, are the least
likely: their mass is what the recorded ones leave of 1)."""


FinishReason = Literal["stop", "length", "cancelled", "context"]


@dataclass(frozen=True)
class ChatResult:
    reply: str
    finish_reason: FinishReason
    prompt_tokens: int
    """Tokens in the whole rendered prompt."""
    evaluated_tokens: int
    """Prompt tokens computed for this turn (the rest came from the cache)."""
    completion_tokens: int
    ttft_ms: float
    """From the request reaching the worker to the first reply token."""
    tokens_per_s: float
    """Generation speed after the first token."""
    context_size: int
    context_used: int
    ahead_tokens: int = 0
    """Of the evaluated tokens, those computed before the request came, while
    the user read the last reply and typed (the start of this prompt was
    known once that reply was in)."""
    trimmed_messages: int = 0
    """Messages of the conversation the model did not see this turn (the
    chat's overflow policy left them out)."""
    dropped: tuple[int, ...] = ()
    """Which ones: indexes into the messages sent."""
    shifted_tokens: int = 0
    """Tokens of dropped messages removed from the KV cache in place (the rest
    moved down) rather than re-evaluating the prompt."""
    reasoning: str = ""
    """The model's thinking (``reply`` holds the answer only)."""
    reasoning_tokens: int = 0
    """Of the completion tokens, those of the thinking (its markers too)."""
    content_tokens: int = 0
    """Of the completion tokens, those of the answer."""
    thinking_ms: float = 0.0
    """How long the model thought: from its first token to the end of its
    thinking (0 when it did not think)."""
    tokens: tuple[TokenLogprob, ...] = ()
    """Every generated token with its log-probability, when asked for
    (``Chat.top_logprobs``)."""


@dataclass(frozen=True)
class ContextReport:
    """The answer to :class:`PlanContext`."""

    prompt_tokens: int
    """Exact tokens of the prompt the model would see (template included)."""
    n_ctx: int
    reserve: int
    """Kept free for the reply (the max tokens setting, at most a quarter of the context)."""
    dropped: tuple[int, ...] = ()
    """Indexes of the messages the overflow policy leaves out of view."""
    cut: int | None = None
    """Index of a message shortened because it does not fit even alone."""
    excess: int = 0
    """Under the ``stop`` policy: tokens over the limit (nothing is dropped)."""
    thinking_tokens: int = 0
    """Of the prompt's tokens, those of earlier thinking the template keeps
    in view (most templates drop it from history: then 0)."""

    @property
    def free(self) -> int:
        """Tokens left after the prompt and the reply's reserve."""
        return self.n_ctx - self.prompt_tokens - self.reserve


@dataclass(frozen=True)
class PromptShown:
    """The answer to :class:`ShowPrompt`."""

    text: str
    """The prompt as the template rendered it."""
    tokens: tuple[tuple[int, str], ...]
    """Its tokens, (id, text): the texts joined give ``text`` (a character
    split across tokens is in the token that completes it)."""
    dropped: tuple[int, ...] = ()
    """Indexes of the messages left out of view (the overflow policy)."""
    n_ctx: int = 0
    reserve: int = 0


@dataclass(frozen=True)
class PerplexityReport:
    """The answer to :class:`Perplexity`."""

    windows: int
    tokens: int
    """Tokens predicted (and scored)."""
    nll: float
    """Mean negative log-likelihood per token, in nats."""
    top1: float
    """Share of tokens that were the model's first choice."""

    @property
    def perplexity(self) -> float:
        return math.exp(self.nll)


@dataclass(frozen=True)
class LogitsReport:
    values: Any
    """A float32 numpy array, one row of ``n_vocab`` scores per token."""


@dataclass(frozen=True)
class EmbedderLoaded:
    path: str
    dim: int
    pooling: str
    """How the model pools its token vectors: "mean", "cls", "last" or
    "none" (then they are averaged)."""
    n_ctx: int


@dataclass(frozen=True)
class Embeddings:
    vectors: Any
    """A ``[len(texts), dim]`` float32 numpy array, each row of length 1."""
    tokens: tuple[int, ...]
    """Each text's tokens embedded (after any cut to the context)."""


@dataclass(frozen=True)
class Ok:
    pass


FailureKind = Literal["file", "load", "request", "internal"]
"""Which error class the parent raises: ModelFileError, ModelLoadError,
EngineError, or an internal error (a bug)."""


@dataclass(frozen=True)
class Failed:
    kind: FailureKind
    message: str


@dataclass(frozen=True)
class Reply:
    id: int
    body: (
        LoadedModel
        | LoadStage
        | Tokens
        | Rendered
        | Piece
        | ChatResult
        | ContextReport
        | PromptShown
        | PerplexityReport
        | LogitsReport
        | Ok
        | Failed
    )
