"""``localchat serve``: an OpenAI- and Ollama-compatible HTTP API over the
engine, on this computer (Starlette, run by uvicorn). One engine, one request
generating at a time, in arrival order; see ``app.py`` for how it fits."""
