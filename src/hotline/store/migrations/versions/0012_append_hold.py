"""The transcript hold: set by a restore, or when a peer shows that it holds more of this node's
transcript or sequence than the store does (docs/operations.md, "Restore").

Revision ID: 0012_append_hold
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_append_hold"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "append_hold",
        # One row (id 1) at most: the store is on hold, or it is not.
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("since_us", sa.BigInteger, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        # Peers whose heartbeat confirmed the restored store (JSON list of names).
        sa.Column("confirmed", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("append_hold")
