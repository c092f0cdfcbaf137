"""Our own clock on every message: ``messages.noted_at_us`` (when we wrote it, or when it
reached our inbox), which lists and acknowledgement deadlines go by instead of the author's
claimed ``created_at_us`` (threat model P9), and its index.

Existing rows get their first recorded event (queued for ours, delivered for received ones;
every message has one), else their claimed time.

Revision ID: 0014_messages_noted
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_messages_noted"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("noted_at_us", sa.BigInteger, nullable=True))
    op.execute(
        "UPDATE messages SET noted_at_us = COALESCE("
        "(SELECT MIN(message_events.at_us) FROM message_events"
        " WHERE message_events.message_id = messages.id), messages.created_at_us)"
    )
    op.create_index("ix_messages_direction_noted", "messages", ["direction", "noted_at_us"])


def downgrade() -> None:
    op.drop_index("ix_messages_direction_noted", table_name="messages")
    op.drop_column("messages", "noted_at_us")
