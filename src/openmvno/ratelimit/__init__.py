"""Sliding-window rate limits kept in the database (shared by every process)."""
