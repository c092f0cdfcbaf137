"""The record of messages is append-only, like the transcript: ``message_events``, ``receipts``
and ``receipt_items`` refuse UPDATE and DELETE, and ``messages`` refuses DELETE and any UPDATE
but of its sealed ``envelope`` (sealed again to a peer's new key after a revocation,
keyring.py). An insider with the store can no longer change a state or a displayed field
without dropping the triggers first (threat model I4).

After 0014, whose backfill updates ``messages``.

Revision ID: 0018_record_append_only
Revises: 0014_messages_noted
"""

from __future__ import annotations

from alembic import op

revision = "0018_record_append_only"
down_revision = "0014_messages_noted"
branch_labels = None
depends_on = None

_APPEND_ONLY = ("message_events", "receipts", "receipt_items")
#: Every column of ``messages`` but ``envelope``.
_FIXED_COLUMNS = (
    "id, direction, peer, seq, kind, msg_type, priority, created_at_us, expires_at_us, "
    "in_reply_to, body, signed, signed_hash, author, released_by, notification, noted_at_us"
)
_MESSAGE = "the message record is append-only"


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table in _APPEND_ONLY:
            for action in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END"
                )
        op.execute(
            "CREATE TRIGGER messages_no_delete BEFORE DELETE ON messages "
            f"BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END"
        )
        op.execute(
            f"CREATE TRIGGER messages_fixed BEFORE UPDATE OF {_FIXED_COLUMNS} ON messages "
            f"BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END"
        )
    elif dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION record_append_only() RETURNS trigger AS $$ "
            # SQLSTATE class 23, as SQLite's RAISE(ABORT) in a trigger: an IntegrityError on both.
            f"BEGIN RAISE EXCEPTION '{_MESSAGE}' "
            "USING ERRCODE = 'integrity_constraint_violation'; END $$ LANGUAGE plpgsql"
        )
        for table in _APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION record_append_only()"
            )
        op.execute(
            "CREATE TRIGGER messages_no_delete BEFORE DELETE ON messages "
            "FOR EACH ROW EXECUTE FUNCTION record_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER messages_fixed BEFORE UPDATE OF {_FIXED_COLUMNS} ON messages "
            "FOR EACH ROW EXECUTE FUNCTION record_append_only()"
        )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table in _APPEND_ONLY:
            for action in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{action}")
        op.execute("DROP TRIGGER IF EXISTS messages_no_delete")
        op.execute("DROP TRIGGER IF EXISTS messages_fixed")
    elif dialect == "postgresql":
        for table in _APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute("DROP TRIGGER IF EXISTS messages_no_delete ON messages")
        op.execute("DROP TRIGGER IF EXISTS messages_fixed ON messages")
        op.execute("DROP FUNCTION IF EXISTS record_append_only()")
