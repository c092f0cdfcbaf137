"""Two indexes of ``messages`` that every insert paid for and no query needed as they were:

- ``ix_messages_direction_peer`` is dropped: it indexed the columns of the unique constraint
  ``uq_messages_direction_peer_seq``, in the same order, whose own index serves every query;
- ``ix_messages_notification`` now holds only the rows that have a notification id (a message
  sent to several peers at once): the lookup by id is its only use, and the other rows, almost
  all of them, no longer cost a page of each commit.

Each commit writes every page it changed to the WAL (about 9 us a page on this machine): two
pages less for every message stored, on each side of the link (docs/benchmarks.md, "Session 7").

Revision ID: 0020_messages_indexes
Revises: 0018_record_append_only
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020_messages_indexes"
down_revision = "0018_record_append_only"
branch_labels = None
depends_on = None

_HAS_NOTIFICATION = sa.text("notification IS NOT NULL")


def upgrade() -> None:
    op.drop_index("ix_messages_direction_peer", table_name="messages")
    op.drop_index("ix_messages_notification", table_name="messages")
    op.create_index(
        "ix_messages_notification",
        "messages",
        ["notification"],
        sqlite_where=_HAS_NOTIFICATION,
        postgresql_where=_HAS_NOTIFICATION,
    )


def downgrade() -> None:
    op.drop_index("ix_messages_notification", table_name="messages")
    op.create_index("ix_messages_notification", "messages", ["notification"])
    op.create_index("ix_messages_direction_peer", "messages", ["direction", "peer", "seq"])
