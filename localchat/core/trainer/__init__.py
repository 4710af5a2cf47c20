"""Build a GPT from scratch: data preparation (``data``, no PyTorch needed),
the llama-architecture model in PyTorch (``model``, the ``train`` extra) and
its export to GGUF (``gguf_export``)."""
