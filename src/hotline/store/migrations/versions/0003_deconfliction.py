"""The deconfliction engine's table: active volumes with their versions.

Revision ID: 0003
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deconfliction_volumes",
        sa.Column("owner", sa.String(64), primary_key=True),
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("geometry", sa.Text, nullable=False),
        sa.Column("radius_m", sa.Float, nullable=True),
        sa.Column("half_width_m", sa.Float, nullable=True),
        sa.Column("max_error_m", sa.Float, nullable=False),
        sa.Column("footprint", sa.LargeBinary, nullable=False),
        sa.Column("altitude_lower", sa.Float, nullable=False),
        sa.Column("altitude_upper", sa.Float, nullable=False),
        sa.Column("time_start_us", sa.BigInteger, nullable=False),
        sa.Column("time_end_us", sa.BigInteger, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
        sa.Column("removed_at_us", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_deconfliction_volumes_time_end", "deconfliction_volumes", ["time_end_us"])


def downgrade() -> None:
    op.drop_index("ix_deconfliction_volumes_time_end", "deconfliction_volumes")
    op.drop_table("deconfliction_volumes")
