"""Tree heads: our own signed heads and every head a peer showed us.

Revision ID: 0004
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "own_tree_heads",
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root", sa.LargeBinary, nullable=False),
        sa.Column("statement", sa.LargeBinary, nullable=False),
        sa.Column("at_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "peer_tree_heads",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("peer", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("root", sa.LargeBinary, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("evidence", sa.LargeBinary, nullable=False),
        sa.Column("received_at_us", sa.BigInteger, nullable=False),
        sa.Column("checked", sa.Integer, nullable=False),
    )
    op.create_index("ix_peer_tree_heads_peer_size", "peer_tree_heads", ["peer", "size"])


def downgrade() -> None:
    op.drop_table("peer_tree_heads")
    op.drop_table("own_tree_heads")
