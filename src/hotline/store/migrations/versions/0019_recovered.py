"""Recovered evidence: statements of a link lost by a restore, fetched back from the peer with
inclusion proofs in its log (docs/operations.md, "Restore"). Kept apart from the transcript,
which they never enter, and append-only like it (UPDATE and DELETE refused).

Revision ID: 0019_recovered
Revises: 0012_append_hold
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019_recovered"
down_revision = "0012_append_hold"
branch_labels = None
depends_on = None

_MESSAGE = "recovered evidence is append-only"


def upgrade() -> None:
    op.create_table(
        "recovered_statements",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("peer", sa.String(64), nullable=False),
        sa.Column("direction", sa.String(3), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("ref", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("msg_type", sa.String(64), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("created", sa.String(40), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("signed", sa.LargeBinary, nullable=False),
        sa.Column("signed_hash", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("leaf_index", sa.BigInteger, nullable=False),
        sa.Column("proof", sa.LargeBinary, nullable=False),
        sa.Column("tree_size", sa.BigInteger, nullable=False),
        sa.Column("tree_root", sa.String(64), nullable=False),
        sa.Column("recovered_at_us", sa.BigInteger, nullable=False),
        sa.UniqueConstraint(
            "peer", "direction", "seq", name="uq_recovered_statements_peer_direction_seq"
        ),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER recovered_statements_no_{action.lower()} BEFORE {action} ON "
                f"recovered_statements BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END"
            )
    elif dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION recovered_append_only() RETURNS trigger AS $$ "
            f"BEGIN RAISE EXCEPTION '{_MESSAGE}' "
            "USING ERRCODE = 'integrity_constraint_violation'; END $$ LANGUAGE plpgsql"
        )
        op.execute(
            "CREATE TRIGGER recovered_statements_append_only BEFORE UPDATE OR DELETE ON "
            "recovered_statements FOR EACH ROW EXECUTE FUNCTION recovered_append_only()"
        )


def downgrade() -> None:
    op.drop_table("recovered_statements")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS recovered_append_only()")
