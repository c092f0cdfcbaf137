"""The transcript's tables, on the store's shared ``metadata`` (migration ``0002``).

``transcript_leaves`` holds one row per log entry: its index, its RFC 9162 leaf hash and what it
records (``kind`` and ``ref``, e.g. "message" and an envelope id). The entry's bytes themselves are
not kept here; they live with the message they record.

``transcript_nodes`` holds the hash of every perfect subtree above the leaves. The subtree
``(level, idx)`` covers leaves ``[idx * 2**level, (idx + 1) * 2**level)``; for ``level >= 1`` its
row is keyed by its in-order position in the tree, ``pos = idx * 2**(level + 1) + 2**level - 1``
(leaf ``i`` would be ``2 * i``, so every stored node has an odd ``pos``; level 0 is
``transcript_leaves.leaf_hash``). One integer key makes a batch of subtrees one ``pos IN (...)``
primary-key lookup on both engines. A row is written once, when the subtree's last leaf is
appended, and never changes. Any root or proof needs at most ~2 * 62 rows.

Both tables are append-only: the migration adds triggers that refuse UPDATE and DELETE.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
)

from hotline.store.schema import metadata

# On SQLite an ``INTEGER PRIMARY KEY`` is the table's rowid: no separate index to maintain.
_Index64 = BigInteger().with_variant(Integer(), "sqlite")

transcript_leaves = Table(
    "transcript_leaves",
    metadata,
    Column("idx", _Index64, primary_key=True, autoincrement=False),
    Column("leaf_hash", LargeBinary, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("ref", String(128), nullable=False),
    CheckConstraint("length(leaf_hash) = 32", name="leaf_hash_size"),
    CheckConstraint("idx >= 0", name="idx_nonnegative"),
)
Index("ix_transcript_leaves_ref", transcript_leaves.c.ref)

transcript_nodes = Table(
    "transcript_nodes",
    metadata,
    Column("pos", _Index64, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary, nullable=False),
    CheckConstraint("length(hash) = 32", name="hash_size"),
    CheckConstraint("pos >= 1 AND pos % 2 = 1", name="pos_odd"),
)

__all__ = ["transcript_leaves", "transcript_nodes"]
