"""Relays and transports: the relay's mailbox and request ids; the transport of link events.

Revision ID: 0011_relay
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_relay"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "relay_mailbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("recipient", sa.String(64), nullable=False),
        sa.Column("sender", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("envelope_id", sa.String(36), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("envelope", sa.LargeBinary, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("deposited_at_us", sa.BigInteger, nullable=False),
        sa.Column("expires_at_us", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("recipient", "digest", name="uq_relay_mailbox_recipient_digest"),
        # The id is the pull cursor: it must never be reused (SQLite reuses without this).
        sqlite_autoincrement=True,
    )
    op.create_index("ix_relay_mailbox_recipient_id", "relay_mailbox", ["recipient", "id"])
    op.create_table(
        "relay_requests",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("sender", sa.String(64), nullable=False),
        sa.Column("at_us", sa.BigInteger, nullable=False),
    )
    # Which transport (an endpoint URL, or relay:NAME) a link observation was made over.
    with op.batch_alter_table("link_events") as batch:
        batch.add_column(sa.Column("transport", sa.String(300), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("link_events") as batch:
        batch.drop_column("transport")
    op.drop_table("relay_requests")
    op.drop_table("relay_mailbox")
