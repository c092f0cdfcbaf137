"""Cyber referrals: cases, their append-only events, TAXII objects and TAXII accounts.

Revision ID: 0005
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0001"
branch_labels = None
depends_on = None

_Key64 = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "referral_cases",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("direction", sa.String(3), nullable=False),
        sa.Column("peer", sa.String(64), nullable=False),
        sa.Column("opened_at_us", sa.BigInteger, nullable=False),
        sa.Column("deadline_us", sa.BigInteger, nullable=False),
        sa.Column("tlp", sa.String(16), nullable=False),
        sa.Column("actions", sa.Text, nullable=False),
        sa.Column("narrative", sa.Text, nullable=False),
        sa.Column("object_count", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("acknowledged_at_us", sa.BigInteger, nullable=True),
        sa.Column("action_at_us", sa.BigInteger, nullable=True),
        sa.Column("declined_at_us", sa.BigInteger, nullable=True),
        sa.Column("closed_at_us", sa.BigInteger, nullable=True),
        sa.Column("served", sa.Integer, nullable=False),
        sa.Column("problem", sa.Text, nullable=True),
    )
    op.create_index("ix_referral_cases_peer_opened", "referral_cases", ["peer", "opened_at_us"])
    op.create_table(
        "referral_events",
        sa.Column("id", _Key64, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(36), nullable=False),
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("at_us", sa.BigInteger, nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("accepted", sa.Integer, nullable=False),
        sa.Column("problem", sa.Text, nullable=True),
        sa.UniqueConstraint("message_id", name="uq_referral_events_message_id"),
    )
    op.create_index("ix_referral_events_case", "referral_events", ["case_id", "id"])
    op.create_table(
        "taxii_objects",
        sa.Column("pk", _Key64, primary_key=True, autoincrement=True),
        sa.Column("collection", sa.String(36), nullable=False),
        sa.Column("stix_id", sa.String(128), nullable=False),
        sa.Column("stix_type", sa.String(64), nullable=False),
        sa.Column("version", sa.String(40), nullable=False),
        sa.Column("spec_version", sa.String(8), nullable=False),
        sa.Column("case_id", sa.String(36), nullable=False),
        sa.Column("added_us", sa.BigInteger, nullable=False),
        sa.Column("latest", sa.Integer, nullable=False),
        sa.Column("first", sa.Integer, nullable=False),
        sa.Column("object", sa.Text, nullable=False),
        sa.UniqueConstraint("collection", "stix_id", "version", name="uq_taxii_objects_version"),
    )
    op.create_index("ix_taxii_objects_collection_pk", "taxii_objects", ["collection", "pk"])
    op.create_index(
        "ix_taxii_objects_collection_added", "taxii_objects", ["collection", "added_us", "pk"]
    )
    op.create_table(
        "taxii_users",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("taxii_users")
    op.drop_index("ix_taxii_objects_collection_added", "taxii_objects")
    op.drop_index("ix_taxii_objects_collection_pk", "taxii_objects")
    op.drop_table("taxii_objects")
    op.drop_index("ix_referral_events_case", "referral_events")
    op.drop_table("referral_events")
    op.drop_index("ix_referral_cases_peer_opened", "referral_cases")
    op.drop_table("referral_cases")
