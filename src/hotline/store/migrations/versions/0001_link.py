"""The link's tables: peers, messages, their events, receipts, security and link events.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "peers",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("card", sa.LargeBinary, nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("added_at_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "messages",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("direction", sa.String(3), nullable=False),
        sa.Column("peer", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("msg_type", sa.String(64), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("expires_at_us", sa.BigInteger, nullable=True),
        sa.Column("in_reply_to", sa.String(36), nullable=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("signed", sa.LargeBinary, nullable=False),
        sa.Column("signed_hash", sa.String(64), nullable=False),
        sa.Column("envelope", sa.LargeBinary, nullable=False),
        sa.Column("author", sa.String(64), nullable=True),
        sa.Column("released_by", sa.String(64), nullable=True),
        sa.Column("notification", sa.String(36), nullable=True),
        sa.UniqueConstraint("direction", "peer", "seq", name="uq_messages_direction_peer_seq"),
    )
    op.create_index("ix_messages_direction_peer", "messages", ["direction", "peer", "seq"])
    op.create_index("ix_messages_notification", "messages", ["notification"])
    op.create_table(
        "outbox_queue",
        sa.Column("message_id", sa.String(36), primary_key=True),
        sa.Column("peer", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("expires_at_us", sa.BigInteger, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
    )
    op.create_index("ix_outbox_queue_peer_seq", "outbox_queue", ["peer", "seq"], unique=True)
    op.create_table(
        "inbound_gaps",
        sa.Column("peer", sa.String(64), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("noticed_at_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "message_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("at_us", sa.BigInteger, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_message_events_message", "message_events", ["message_id", "id"])
    op.create_table(
        "receipts",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("direction", sa.String(3), nullable=False),
        sa.Column("peer", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("signed", sa.LargeBinary, nullable=False),
        sa.Column("at_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "receipt_items",
        sa.Column("receipt_id", sa.String(36), primary_key=True),
        sa.Column("message_id", sa.String(36), primary_key=True),
    )
    op.create_index("ix_receipt_items_message", "receipt_items", ["message_id"])
    op.create_table(
        "security_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at_us", sa.BigInteger, nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("peer", sa.String(64), nullable=True),
        sa.Column("source", sa.String(128), nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_table(
        "link_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("peer", sa.String(64), nullable=False),
        sa.Column("at_us", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("rtt_us", sa.BigInteger, nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_link_events_peer", "link_events", ["peer", "id"])


def downgrade() -> None:
    for table in (
        "link_events",
        "security_events",
        "receipt_items",
        "receipts",
        "message_events",
        "inbound_gaps",
        "outbox_queue",
        "messages",
        "peers",
    ):
        op.drop_table(table)
