"""``localchat chat``: a conversation with a model in the terminal: one
prompt, a turn per line piped in, or interactive; ``--json`` prints one JSON
object per turn.

A reasoning model's thinking is printed before its answer: dimmed on a
terminal that takes colour, else between a ``Thinking...`` line and a
``...done thinking.`` line, a blank line before the answer (see
:class:`ReplyPrinter`); ``--hide-thinking`` prints only the answer."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import IO, Any

from localchat.cli import output
from localchat.cli.usage import UsageError, add_json
from localchat.core import params
from localchat.core.chat.chat_export import token_json
from localchat.core.engine.client import ChatStream, Engine
from localchat.core.engine.protocol import (
    MAX_TOP_LOGPROBS,
    ChatResult,
    Message,
    Piece,
)
from localchat.core.errors import EXIT_INTERRUPTED, SettingError
from localchat.core.models import library
from localchat.core.settings import AppSettings

JSON_FIELDS = (
    "reply",
    "reasoning",
    "prompt_tokens",
    "evaluated_tokens",
    "ahead_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "content_tokens",
    "ttft_ms",
    "tokens_per_s",
    "context_size",
    "context_used",
    "finish_reason",
    "trimmed_messages",
    "shifted_tokens",
)
"""The keys of a turn's JSON object, in order (then ``backend``)."""


def add_parser(sub: Any) -> None:
    chat = sub.add_parser(
        "chat",
        help="chat with a model in the terminal",
        description="Chat with a model. With --prompt: one reply. With input piped in: each "
        "line is a user turn of one conversation. Otherwise: an interactive chat.",
    )
    chat.add_argument("-m", "--model", help="a .gguf file or the name of an installed model")
    chat.add_argument("--prompt", help="send this one message and print the reply")
    add_json(chat, "one JSON object per turn")
    chat.add_argument("--lora", metavar="PATH", help="apply this LoRA adapter (.gguf)")
    chat.add_argument(
        "--hide-thinking",
        action="store_true",
        help="print only the answer, not a reasoning model's thinking (display only: "
        "--json still includes it as reasoning, and the model still thinks)",
    )
    chat.add_argument(
        "--top-logprobs",
        type=int,
        default=0,
        metavar="N",
        help="with --json: each turn gains 'tokens', every generated token with its id, "
        "text and log-probability and the N most likely candidates at its position "
        f"(0..{MAX_TOP_LOGPROBS}; 0 = no tokens list)",
    )
    chat.add_argument(
        "--twin",
        metavar="NAME",
        help="chat with a digital twin (see 'localchat twin'): its model and adapter (unless "
        "-m or --lora say otherwise), its persona as the system prompt (unless --system), "
        "each turn grounded in its texts",
    )
    chat.add_argument(
        "--docs",
        action="append",
        metavar="NAME",
        help="ground each turn in this document collection (see 'localchat docs'; may be "
        "given more than once): the passages found go to the model, and are listed under the "
        "reply (with --json, as each turn's 'sources')",
    )
    params.add_cli_arguments(chat)


def run(args: argparse.Namespace) -> int:
    persona = None
    if args.twin:
        from localchat.core.documents import twins

        twin = twins.load(args.twin)
        args.model = args.model or twin.model
        args.lora = args.lora or twin.adapter
        args.docs = [twin.collection, *(args.docs or [])]
        persona = twin.persona
    model = library.resolve(args.model)
    # The settings chosen for this model in the window (or recommended by the
    # catalog) are the defaults here too; the flags go on top.
    stored = AppSettings()
    if stored.problem:
        print(f"note: {stored.problem}", file=sys.stderr)
    try:
        settings = params.from_cli(args, stored.generation(str(model)))
    except SettingError as exc:
        raise UsageError(str(exc)) from None
    if persona is not None and getattr(args, "system_prompt", None) is None:
        settings = settings.replace(system_prompt=persona)
    if not 0 <= args.top_logprobs <= MAX_TOP_LOGPROBS:
        raise UsageError(f"--top-logprobs must be between 0 and {MAX_TOP_LOGPROBS}")
    if args.top_logprobs and not args.json:
        raise UsageError("--top-logprobs needs --json (the tokens are listed in it)")
    documents = None
    if args.docs:
        from localchat.core.documents.store import DocumentStore

        documents = DocumentStore()
        for name in args.docs:
            documents.collection(name)  # an unknown one: said before the model loads
    with Engine() as engine:
        loaded = engine.load(model, settings, lora=args.lora)
        if loaded.notice:
            print(f"note: {loaded.notice}", file=sys.stderr)
        session = Session(
            engine,
            settings,
            as_json=args.json,
            out=sys.stdout,
            show_thinking=not args.hide_thinking,
            top_logprobs=args.top_logprobs,
            documents=(documents, args.docs) if documents is not None else None,
        )
        if documents is not None:
            session.embedding = _embedding(engine, documents, args.docs)
        if args.prompt is not None:
            return session.turn(args.prompt)
        if not sys.stdin.isatty():
            for line in sys.stdin:
                text = line.rstrip("\r\n")
                if text.strip():
                    code = session.turn(text)
                    if code:
                        return code
            return 0
        return _interactive(session, model.stem)


def _embedding(engine: Engine, store: Any, names: list[str]) -> Any:
    """The embedding model of the first collection that has one, loaded in
    the chat's engine (one embedding model at a time: the others are
    searched by their words only)."""
    from localchat.core.documents.embedding import Embedding, installed_embedder

    for name in names:
        embedder = store.collection(name).embedder
        if embedder:
            return Embedding(engine, installed_embedder(embedder))
    return None


class Session:
    """One conversation: the messages so far and how replies are printed."""

    def __init__(
        self,
        engine: Engine,
        settings: params.GenerationSettings,
        *,
        as_json: bool,
        out: IO[str],
        show_thinking: bool = True,
        top_logprobs: int = 0,
        documents: tuple[Any, list[str]] | None = None,
    ) -> None:
        """``documents``: the document store and the collections each turn
        is grounded in."""
        self.engine = engine
        self.documents = documents
        self.embedding: Any = None
        """The collections' embedding model, loaded beside the chat model."""
        self.top_logprobs = top_logprobs
        self.settings = settings
        self.as_json = as_json
        self.out = out
        self.show_thinking = show_thinking
        self.messages: list[Message] = []

    def turn(self, text: str) -> int:
        """Send one user message and print the reply; returns an exit status."""
        self.messages.append({"role": "user", "content": text})
        sent = self.messages
        passages: tuple[Any, ...] = ()
        if self.documents is not None:
            from localchat.core.documents.grounding import ground

            store, names = self.documents
            grounded = ground(store, names, text, embedding=self.embedding)
            passages = grounded.passages
            # This turn's message carries the passages; the history keeps the words.
            sent = [*self.messages[:-1], {"role": "user", "content": grounded.message}]
        stream = self.engine.chat(sent, self.settings, top_logprobs=self.top_logprobs)
        interrupted = self._print(stream)
        if self.documents is not None and not self.as_json:
            self._print_sources(passages)
        result = stream.result
        assert result is not None
        reply: Message = {"role": "assistant", "content": result.reply}
        if result.reasoning:
            # Apart from the answer: the engine gives it to the template in
            # the field it reads (or leaves it out, as most templates want).
            reply["reasoning"] = result.reasoning
        self.messages.append(reply)
        if self.as_json:
            backend = self.engine.loaded.backend if self.engine.loaded else "CPU"
            data = _json(result, backend)
            if self.top_logprobs:
                data["tokens"] = [token_json(t) for t in result.tokens]
            if self.documents is not None:
                data["sources"] = [
                    {"path": p.path, "location": p.location, "text": p.text} for p in passages
                ]
            output.json_line(data, self.out)
        return EXIT_INTERRUPTED if interrupted else 0

    def _print_sources(self, passages: tuple[Any, ...]) -> None:
        if not passages:
            print("(not found in your documents)", file=self.out)
            return
        print("Sources:", file=self.out)
        for i, p in enumerate(passages, 1):
            where = f", {p.location}" if p.location else ""
            print(f"  [{i}] {p.path}{where}", file=self.out)

    def _print(self, stream: ChatStream) -> bool:
        """Stream the reply; Ctrl+C stops the reply (keeping what came), not the program."""
        interrupted = False

        def on_sigint(_sig: int, _frame: object) -> None:
            nonlocal interrupted
            interrupted = True
            stream.cancel()

        printer = None
        if not self.as_json:
            printer = ReplyPrinter(
                self.out, show_thinking=self.show_thinking, dim=output.color(self.out)
            )
        previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            for piece in stream.pieces():
                if printer:
                    printer.add(piece)
        finally:
            signal.signal(signal.SIGINT, previous)
            if printer:
                printer.finish()  # even on an error: the terminal's colour is reset
        return interrupted


class ReplyPrinter:
    """Writes a reply for a person as it streams: the thinking first, then
    the answer, then a newline.

    The thinking is dimmed (``dim``: a terminal that takes colour), else
    written between a ``Thinking...`` line and a ``...done thinking.`` line;
    either way a blank line separates it from the answer. Whitespace around
    the thinking, and before the answer that follows it, is left out. A
    reply without thinking is written exactly as it comes."""

    START = "Thinking...\n"
    END = "\n...done thinking.\n\n"

    def __init__(self, out: IO[str], *, show_thinking: bool = True, dim: bool = False) -> None:
        self.out = out
        self.show_thinking = show_thinking
        self.dim = dim
        self._thinking = False  # inside the thinking (its start written)
        self._thought = False  # some thinking came (shown or not)
        self._answered = False  # some of the answer was written
        self._space = ""  # the thinking's whitespace, held until more text follows

    def add(self, piece: Piece) -> None:
        if piece.reasoning:
            self._thought = True
            if self.show_thinking:
                self._think(piece.text)
            return
        text = piece.text
        if self._thinking:
            self._end_thinking()
        if self._thought and not self._answered:
            text = text.lstrip()
        if text:
            self._answered = True
            self._write(text)

    def finish(self) -> None:
        """End the reply (an open thinking block too), with its newline."""
        if self._thinking:  # no answer came (the reply ended, or was stopped, thinking)
            self._thinking = False
            self._write(output.RESET + "\n" if self.dim else self.END.rstrip("\n") + "\n")
            return
        self._write("\n")

    def _think(self, text: str) -> None:
        if not self._thinking:
            text = text.lstrip()
            if not text:
                return
            if self._answered:  # more thinking after some answer: a block of its own
                self.out.write("\n\n")
            self._thinking = True
            self.out.write(output.DIM if self.dim else self.START)
        body = text.rstrip()
        if body:
            self.out.write(self._space + body)
            self._space = text[len(body) :]
        else:
            self._space += text
        self.out.flush()

    def _end_thinking(self) -> None:
        self._thinking = False
        self._space = ""
        self.out.write(output.RESET + "\n\n" if self.dim else self.END)

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()


def _json(result: ChatResult, backend: str) -> dict[str, Any]:
    data: dict[str, Any] = {name: getattr(result, name) for name in JSON_FIELDS}
    data["backend"] = backend
    data["ttft_ms"] = round(result.ttft_ms, 2)
    data["tokens_per_s"] = round(result.tokens_per_s, 2)
    return data


def _interactive(session: Session, name: str) -> int:
    info = session.engine.loaded
    size = f", context {info.n_ctx} tokens, on {info.backend}" if info else ""
    print(f"Chatting with {name}{size}. Ctrl+C stops a reply; Ctrl+D (or /exit) quits.")
    while True:
        try:
            text = input(">>> ")
        except EOFError:
            print()
            return 0
        except KeyboardInterrupt:
            print()
            continue
        if text.strip() in ("/exit", "/quit"):
            return 0
        if text.strip():
            session.turn(text)
