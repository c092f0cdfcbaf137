"""Key history: every key generation of this node and of its peers, and the key events.

Revision ID: 0009_keys
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_keys"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "key_history",
        sa.Column("owner", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("card", sa.LargeBinary, nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("added_at_us", sa.BigInteger, nullable=False),
        sa.Column("valid_until_us", sa.BigInteger, nullable=True),
        sa.Column("revoked_at_us", sa.BigInteger, nullable=True),
        sa.Column("confirmed_at_us", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "key_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("at_us", sa.BigInteger, nullable=False),
        sa.Column("old_key_id", sa.String(32), nullable=False),
        sa.Column("new_key_id", sa.String(32), nullable=False),
        sa.Column("statement", sa.LargeBinary, nullable=False),
        sa.Column("message_id", sa.String(36), nullable=True),
    )
    op.create_index("ix_key_events_owner", "key_events", ["owner", "id"])
    # Peers added before key history: their card's key is their active key, and its
    # fingerprint was confirmed when they were added.
    from hotline.core.card import parse_card_statement

    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT name, card, fingerprint, added_at_us FROM peers"))
    for name, card, fingerprint, added_at_us in list(rows):
        key_id = parse_card_statement(bytes(card)).signing_key.key_id.hex()
        bind.execute(
            sa.text(
                "INSERT INTO key_history (owner, key_id, card, fingerprint, state, added_at_us, "
                "confirmed_at_us) VALUES (:o, :k, :c, :f, 'active', :a, :a)"
            ),
            {"o": name, "k": key_id, "c": bytes(card), "f": fingerprint, "a": added_at_us},
        )


def downgrade() -> None:
    op.drop_table("key_events")
    op.drop_table("key_history")
