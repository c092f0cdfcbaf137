"""PostgreSQL: the large byte columns are stored as they are, out of line, never compressed.

PostgreSQL compresses (pglz) any value that makes a row larger than about 2 KB before moving it
out of line. A sealed envelope is ciphertext and a signed statement is mostly signatures: the
compression saves little, and on the link's burst it was a third of the server's CPU time
(perf, docs/benchmarks.md). ``STORAGE EXTERNAL`` keeps the out-of-line storage and drops the
compression, as SQLite stores them. Existing rows stay as they are (both forms read the same);
SQLite has no such setting: nothing to do there.

Revision ID: 0017_pg_storage
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0017_pg_storage"
down_revision = "0004"
branch_labels = None
depends_on = None

_COLUMNS = [
    ("messages", "envelope"),
    ("messages", "signed"),
    ("receipts", "signed"),
    ("peer_tree_heads", "evidence"),
]


def _set_storage(storage: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in _COLUMNS:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET STORAGE {storage}")


def upgrade() -> None:
    _set_storage("EXTERNAL")


def downgrade() -> None:
    _set_storage("EXTENDED")
