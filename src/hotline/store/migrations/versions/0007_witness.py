"""Witnessing: heads a witness cosigned (witness side) and cosignatures received (node side).

Revision ID: 0007
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "witnessed_heads",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("log", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("root", sa.LargeBinary, nullable=False),
        sa.Column("tree_head", sa.LargeBinary, nullable=False),
        sa.Column("cosignature", sa.LargeBinary, nullable=False),
        sa.Column("at_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_witnessed_heads_log_size", "witnessed_heads", ["log", "size"])
    op.create_table(
        "cosignatures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("witness", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("root", sa.LargeBinary, nullable=False),
        sa.Column("statement", sa.LargeBinary, nullable=False),
        sa.Column("at_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_cosignatures_witness_size", "cosignatures", ["witness", "size"])


def downgrade() -> None:
    op.drop_table("cosignatures")
    op.drop_table("witnessed_heads")
