"""Personal tokens of the local operator API: each request made with one acts as one operator,
with that operator's role and name (threat model I2).

Revision ID: 0015_operator_api_tokens
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_operator_api_tokens"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "operator_api_tokens",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("id", sa.String(16), nullable=False, unique=True),
        sa.Column("operator", sa.String(32), nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("revoked_at_us", sa.BigInteger, nullable=True),
        sa.Column("last_used_us", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_operator_api_tokens_operator", "operator_api_tokens", ["operator"])


def downgrade() -> None:
    op.drop_index("ix_operator_api_tokens_operator", table_name="operator_api_tokens")
    op.drop_table("operator_api_tokens")
