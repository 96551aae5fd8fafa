"""Shared web pieces for every channel: the API docs page (more arrive as channels grow)."""
