"""Durable storage: the outbox, the inbox, message history, receipts and events."""

from hotline.store._store import Store

__all__ = ["Store"]
