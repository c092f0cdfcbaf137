"""The store's tables (SQLAlchemy Core), portable between SQLite and PostgreSQL.

History is append-only (DESIGN decision 6): a message's state changes are rows of
``message_events``; the current state is derived from them. Times are integers, microseconds since
the Unix epoch in UTC, so that ordering and comparison are exact on both engines.

Other packages (transcript, deconfliction, ...) define their tables on the same ``metadata``
in their own modules and ship their own Alembic migration.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# A peer: its signed contact card exactly as verified, and the fingerprint the operator confirmed.
peers = Table(
    "peers",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("card", LargeBinary, nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("added_at_us", BigInteger, nullable=False),
)

# Every envelope that crossed (or will cross) a link, in either direction.
# ``kind`` is "message" or "receipt" (an ACKNOWLEDGED receipt travels as a sequenced envelope).
messages = Table(
    "messages",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("direction", String(3), nullable=False),  # "out" | "in"
    Column("peer", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("msg_type", String(64), nullable=False),
    Column("priority", String(16), nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Column("expires_at_us", BigInteger, nullable=True),
    Column("in_reply_to", String(36), nullable=True),
    Column("body", Text, nullable=False),  # JSON of the body exactly as signed, for display
    Column("signed", LargeBinary, nullable=False),  # the author's signed statement
    Column("signed_hash", String(64), nullable=False),  # SHA-256 hex of ``signed``
    Column("envelope", LargeBinary, nullable=False),  # the sealed bytes as sent or received
    Column("author", String(64), nullable=True),  # operator who wrote it (signed in)
    Column("released_by", String(64), nullable=True),  # second person who released it (signed)
    Column("notification", String(36), nullable=True),  # shared by the copies to many peers
    # Our own clock: when we wrote it, or when it reached our inbox. Lists and deadlines go by
    # this, never by the author's claimed ``created_at_us`` (threat model P9). Migration 0014.
    Column("noted_at_us", BigInteger, nullable=True),
    UniqueConstraint("direction", "peer", "seq", name="uq_messages_direction_peer_seq"),
)
# Lookups by (direction, peer, seq) use the unique constraint's index (migration 0020).
Index("ix_messages_direction_noted", messages.c.direction, messages.c.noted_at_us)
# Only the messages sent to several peers at once have a notification id (migration 0020).
Index(
    "ix_messages_notification",
    messages.c.notification,
    sqlite_where=messages.c.notification.isnot(None),
    postgresql_where=messages.c.notification.isnot(None),
)

# The delivery queue: outgoing envelopes still waiting for their DELIVERED receipt. A row is
# removed when the receipt arrives or the envelope expires (the history stays in message_events);
# it keeps the delivery worker's query O(log n) however long the link's history grows.
outbox_queue = Table(
    "outbox_queue",
    metadata,
    Column("message_id", String(36), primary_key=True),
    Column("peer", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("expires_at_us", BigInteger, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
)
Index("ix_outbox_queue_peer_seq", outbox_queue.c.peer, outbox_queue.c.seq, unique=True)

# Sequence numbers from a peer that were skipped (a later one arrived first): each is removed
# when it arrives or when the peer declares it expired; what is left is an alarm.
inbound_gaps = Table(
    "inbound_gaps",
    metadata,
    Column("peer", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("noticed_at_us", BigInteger, nullable=False),
)

# Append-only history of each message's states: queued, sent, delivered, acknowledged, answered,
# expired, escalated, failed_attempt ...
message_events = Table(
    "message_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", String(36), nullable=False),
    Column("state", String(32), nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Column("detail", Text, nullable=False, default=""),
)
Index("ix_message_events_message", message_events.c.message_id, message_events.c.id)

# Signed receipts, both those we issued and those we received. A DELIVERED receipt may cover a
# batch of messages; ``receipt_items`` maps each message to the receipt that covers it.
receipts = Table(
    "receipts",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("direction", String(3), nullable=False),  # "out": we issued it; "in": the peer did
    Column("peer", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # "delivered" | "acknowledged"
    Column("signed", LargeBinary, nullable=False),
    Column("at_us", BigInteger, nullable=False),
)
receipt_items = Table(
    "receipt_items",
    metadata,
    Column("receipt_id", String(36), primary_key=True),
    Column("message_id", String(36), primary_key=True),
)
Index("ix_receipt_items_message", receipt_items.c.message_id)

# Security events: every rejected envelope, alarm and anomaly, with its stable error code.
security_events = Table(
    "security_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at_us", BigInteger, nullable=False),
    Column("code", String(64), nullable=False),
    Column("peer", String(64), nullable=True),
    Column("source", String(128), nullable=True),
    Column("detail", Text, nullable=False),
)

# Link observations: heartbeats and delivery attempts, one row per observation (append-only).
link_events = Table(
    "link_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("peer", String(64), nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Column("kind", String(32), nullable=False),  # heartbeat_ok | heartbeat_failed | ...
    Column("rtt_us", BigInteger, nullable=True),
    Column("detail", Text, nullable=False, default=""),
    # The transport observed: an endpoint URL or ``relay:NAME`` (NULL: the link as a whole).
    Column("transport", String(300), nullable=True),
)
Index("ix_link_events_peer", link_events.c.peer, link_events.c.id)

# Ids of the heartbeats each peer sent that we accepted, for as long as a heartbeat is fresh
# enough to be accepted at all (protocol §8.4 H6-H7): a captured one replayed after a restart
# of this node is still refused (threat N5). Migration 0016.
heartbeats_seen = Table(
    "heartbeats_seen",
    metadata,
    Column("peer", String(64), primary_key=True),
    Column("id", String(36), primary_key=True),
    Column("seen_at_us", BigInteger, nullable=False),
)
Index("ix_heartbeats_seen_at", heartbeats_seen.c.seen_at_us)

__all__ = [
    "heartbeats_seen",
    "inbound_gaps",
    "link_events",
    "message_events",
    "messages",
    "metadata",
    "outbox_queue",
    "peers",
    "receipt_items",
    "receipts",
    "security_events",
]
