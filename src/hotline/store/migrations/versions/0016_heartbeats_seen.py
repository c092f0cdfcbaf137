"""The ids of accepted heartbeats, kept as long as a heartbeat can be fresh, so that a captured
heartbeat replayed after a restart is still refused (threat model N5).

Revision ID: 0016_heartbeats_seen
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_heartbeats_seen"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "heartbeats_seen",
        sa.Column("peer", sa.String(64), primary_key=True),
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("seen_at_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_heartbeats_seen_at", "heartbeats_seen", ["seen_at_us"])


def downgrade() -> None:
    op.drop_index("ix_heartbeats_seen_at", table_name="heartbeats_seen")
    op.drop_table("heartbeats_seen")
