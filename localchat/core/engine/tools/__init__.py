"""Tool calling (function calling): the tools a request offers rendered
through the model's own chat template, the calls parsed back from what the
model writes in its family's format (``formats.py``), while it streams
(``stream.py``), and a grammar that makes a required call well-formed
(``grammar.py``). Text only: no llama.cpp here, the parent parses."""
