"""The transcript: RFC 9162 log entries and the hashes of their perfect subtrees.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_Index64 = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_TABLES = ("transcript_leaves", "transcript_nodes")


def upgrade() -> None:
    op.create_table(
        "transcript_leaves",
        sa.Column("idx", _Index64, primary_key=True, autoincrement=False),
        sa.Column("leaf_hash", sa.LargeBinary, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("ref", sa.String(128), nullable=False),
        sa.CheckConstraint(
            "length(leaf_hash) = 32", name=op.f("ck_transcript_leaves_leaf_hash_size")
        ),
        sa.CheckConstraint("idx >= 0", name=op.f("ck_transcript_leaves_idx_nonnegative")),
    )
    op.create_index("ix_transcript_leaves_ref", "transcript_leaves", ["ref"])
    op.create_table(
        "transcript_nodes",
        sa.Column("pos", _Index64, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary, nullable=False),
        sa.CheckConstraint("length(hash) = 32", name=op.f("ck_transcript_nodes_hash_size")),
        sa.CheckConstraint("pos >= 1 AND pos % 2 = 1", name=op.f("ck_transcript_nodes_pos_odd")),
    )
    # Append-only: refuse UPDATE and DELETE on both tables.
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table in _TABLES:
            for action in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                    "BEGIN SELECT RAISE(ABORT, 'the transcript is append-only'); END"
                )
    elif dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION transcript_append_only() RETURNS trigger AS $$ "
            # SQLSTATE class 23, as SQLite's RAISE(ABORT) in a trigger: an IntegrityError on both.
            "BEGIN RAISE EXCEPTION 'the transcript is append-only' "
            "USING ERRCODE = 'integrity_constraint_violation'; END $$ LANGUAGE plpgsql"
        )
        for table in _TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION transcript_append_only()"
            )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table in _TABLES:
            for action in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{action}")
    elif dialect == "postgresql":
        for table in _TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute("DROP FUNCTION IF EXISTS transcript_append_only()")
    op.drop_table("transcript_nodes")
    op.drop_table("transcript_leaves")
