"""LocalChat: chat with large language models running on your own computer."""

__version__ = "0.1.0"
