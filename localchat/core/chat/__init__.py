"""Chats: the store (SQLite); the session and context window come next."""
