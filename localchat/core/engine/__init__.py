"""The inference engine: a worker process owns llama.cpp; the parent talks to it.

Front ends use :class:`localchat.core.engine.client.Engine` (the parent side)
and never import llama_cpp; only the ``worker`` package (and ``cpu_layout.py``,
which it calls) does.
"""
