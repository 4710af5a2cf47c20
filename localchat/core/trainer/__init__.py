"""The trainer: build a GPT from scratch, or fine-tune a GGUF model with LoRA.

No PyTorch needed: ``data`` (training text), ``chat_data`` (conversations and
their masks) and ``gguf_export``. The ``train`` extra (PyTorch): ``model``
(the llama-architecture network), ``train`` (from scratch), ``base`` (a GGUF
read into the network), ``lora`` (adapters and their files), ``finetune``.
"""
