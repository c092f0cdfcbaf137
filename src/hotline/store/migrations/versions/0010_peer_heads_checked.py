"""An index for the tree-head checks: each peer's unchecked heads, and its largest checked one.

Without it both queries of ``next_check`` scanned every head of the peer (one per DELIVERED
receipt), and on SQLite read each row's evidence statement on the way to ``checked``.

Revision ID: 0010_heads_checked
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0010_heads_checked"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_peer_tree_heads_peer_checked_size", "peer_tree_heads", ["peer", "checked", "size"]
    )


def downgrade() -> None:
    op.drop_index("ix_peer_tree_heads_peer_checked_size", table_name="peer_tree_heads")
