"""The referral tables, on the store's shared ``metadata`` (migration ``0005``).

``referral_cases``      one row per case (its id is the referral message's id), in either
                        direction; ``state`` and the ``*_at_us`` columns are derived from the
                        events and written in the same transaction as the event.
``referral_events``     append-only history: one row per transition (accepted or refused), each
                        tied to the signed message that carried it.
``taxii_objects``       the STIX objects served over TAXII: one collection per peer and
                        direction; ``pk`` is the keyset-pagination key and grows with ``added_us``.
``taxii_users``         accounts for HTTP Basic authentication of TAXII clients.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text, UniqueConstraint

from hotline.store.schema import metadata

# On SQLite an ``INTEGER PRIMARY KEY`` is the rowid: ordered, and no separate index to maintain.
_Key64 = BigInteger().with_variant(Integer(), "sqlite")

referral_cases = Table(
    "referral_cases",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("direction", String(3), nullable=False),  # out: we referred; in: we received
    Column("peer", String(64), nullable=False),
    Column("opened_at_us", BigInteger, nullable=False),
    Column("deadline_us", BigInteger, nullable=False),
    Column("tlp", String(16), nullable=False),
    Column("actions", Text, nullable=False),  # JSON list of requested actions
    Column("narrative", Text, nullable=False),
    Column("object_count", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("acknowledged_at_us", BigInteger, nullable=True),
    Column("action_at_us", BigInteger, nullable=True),
    Column("declined_at_us", BigInteger, nullable=True),
    Column("closed_at_us", BigInteger, nullable=True),
    Column("served", Integer, nullable=False),  # 1: its objects are in a TAXII collection
    Column("problem", Text, nullable=True),  # why they are not (TLP:RED, invalid STIX, ...)
)
Index("ix_referral_cases_peer_opened", referral_cases.c.peer, referral_cases.c.opened_at_us)

referral_events = Table(
    "referral_events",
    metadata,
    Column("id", _Key64, primary_key=True, autoincrement=True),
    Column("case_id", String(36), nullable=False),
    Column("message_id", String(36), nullable=False),
    Column("state", String(16), nullable=False),
    Column("side", String(8), nullable=False),  # referrer | receiver
    Column("at_us", BigInteger, nullable=False),
    Column("note", Text, nullable=True),
    Column("reason", Text, nullable=True),
    Column("accepted", Integer, nullable=False),
    Column("problem", Text, nullable=True),
    UniqueConstraint("message_id", name="uq_referral_events_message_id"),
)
Index("ix_referral_events_case", referral_events.c.case_id, referral_events.c.id)

taxii_objects = Table(
    "taxii_objects",
    metadata,
    Column("pk", _Key64, primary_key=True, autoincrement=True),
    Column("collection", String(36), nullable=False),
    Column("stix_id", String(128), nullable=False),
    Column("stix_type", String(64), nullable=False),
    Column("version", String(40), nullable=False),  # modified, else created, else ""
    Column("spec_version", String(8), nullable=False),
    Column("case_id", String(36), nullable=False),
    Column("added_us", BigInteger, nullable=False),
    Column("latest", Integer, nullable=False),
    Column("first", Integer, nullable=False),
    Column("object", Text, nullable=False),
    UniqueConstraint("collection", "stix_id", "version", name="uq_taxii_objects_version"),
)
Index("ix_taxii_objects_collection_pk", taxii_objects.c.collection, taxii_objects.c.pk)
Index(
    "ix_taxii_objects_collection_added",
    taxii_objects.c.collection,
    taxii_objects.c.added_us,
    taxii_objects.c.pk,
)

taxii_users = Table(
    "taxii_users",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("password_hash", Text, nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
)

__all__ = ["referral_cases", "referral_events", "taxii_objects", "taxii_users"]
