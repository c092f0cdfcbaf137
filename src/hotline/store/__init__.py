"""Durable storage: the outbox, the inbox, message history, receipts and events."""

from hotline.store._store import Store, after_commit

__all__ = ["Store", "after_commit"]
