"""The Qt-free core: engine, models, chats, context window, trainer."""
