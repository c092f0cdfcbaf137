"""Where the active replica answers: written by the process that takes the leader lock, read by
CLI commands that wake the node (docs/operations.md, "Replicas").

Revision ID: 0013_active_replica
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_active_replica"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "active_replica",
        # One row (id 1) at most: the process that last became active.
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("session_pid", sa.BigInteger, nullable=False),
        sa.Column("since_us", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("active_replica")
