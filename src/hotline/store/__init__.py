"""Durable storage: the outbox, the inbox, message history, receipts and events."""
