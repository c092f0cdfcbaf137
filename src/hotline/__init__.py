"""hotline: a secure, verifiable direct-communications and deconfliction link.

The data path of a message is visible in the package tree:
``compose`` (typed, bilingual notifications) -> ``core`` (keys, envelope, receipts, Merkle math;
pure, no I/O) -> ``link`` (delivery, transports, heartbeats) -> ``store`` (durable outbox, inbox,
history) -> ``transcript`` (the append-only log both sides can verify).
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
