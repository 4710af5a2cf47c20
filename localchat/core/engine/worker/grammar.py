"""A reply's grammar (GBNF text, ``Chat.grammar``), checked before it is used.

llama-cpp-python 0.3.36's ``LlamaGrammar.from_string`` parses nothing: it
keeps the text, and ``Llama.generate`` hands it to llama.cpp's grammar sampler
when it builds its sampler chain. A grammar llama.cpp cannot parse (a syntax
error, no ``root`` rule, left recursion) makes that sampler NULL, which the
chain takes as it is and crashes the worker on the first token. So the text
is parsed here first, by llama.cpp itself (a grammar sampler made and freed),
and a bad one is a one-line :class:`EngineError` quoting llama.cpp's complaint.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator

import llama_cpp

from localchat.core.engine.worker.llama_log import LlamaLog
from localchat.core.errors import EngineError


def compile_grammar(llm: llama_cpp.Llama, text: str, log: LlamaLog) -> llama_cpp.LlamaGrammar:
    """The grammar for ``llm.generate(grammar=...)``, once llama.cpp has
    parsed it against this model's vocabulary."""
    if not text.strip():
        raise EngineError("the grammar is empty")
    log.lines.clear()  # so the complaint quoted is this grammar's
    with _stderr() as said:
        sampler = llama_cpp.llama_sampler_init_grammar(
            llm._model.vocab, text.encode("utf-8"), b"root"
        )
    if not sampler:
        raise EngineError(f"the grammar is not valid: {_complaint(said, log)}")
    llama_cpp.llama_sampler_free(sampler)
    return llama_cpp.LlamaGrammar.from_string(text, verbose=False)


@contextlib.contextmanager
def _stderr() -> Iterator[list[str]]:
    """Meanwhile, what is written to file descriptor 2 is caught (llama.cpp's
    grammar parser prints its reason there, not to its log callback); the list
    yielded holds it afterwards."""
    said: list[str] = []
    sys.stderr.flush()
    with tempfile.TemporaryFile() as caught:
        saved = os.dup(2)
        os.dup2(caught.fileno(), 2)
        try:
            yield said
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            said.append(caught.read().decode("utf-8", "replace"))


def _complaint(said: list[str], log: LlamaLog) -> str:
    """llama.cpp's reason, in one line: the parser's ("Undefined rule
    identifier 'x'", without the grammar it quotes after it), else the
    grammar checks' ("left recursion detected...") from its log."""
    m = re.search(r"error parsing grammar: ([^\n]*)", "".join(said))
    if m and m[1].strip():
        return m[1].strip()
    lines = [ln for ln in log.lines if "failed to parse grammar" not in ln]
    return lines[-1] if lines else "llama.cpp could not parse it"
