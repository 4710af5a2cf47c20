"""The trainer: build a GPT from scratch, or fine-tune a GGUF model with LoRA.

No PyTorch needed: ``settings`` and ``options`` (every option declared once:
the CLI flags and the Train window's form derive from them), ``progress``
(the ``--json`` progress lines), ``data`` (training text), ``chat_data``
(conversations and their masks), ``finetune_data`` (a fine-tune's data,
tokenized) and ``gguf_export``. The ``train`` extra (PyTorch): ``model`` (the
llama-architecture network), ``loop`` (the training loop both trainers
share), ``checkpoint`` (their checkpoints), ``train`` (from scratch), ``base``
(a GGUF read into the network), ``lora`` (adapters and their files),
``memory`` (what a fine-tune needs) and ``finetune``.
"""
