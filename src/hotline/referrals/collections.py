"""The STIX objects served over TAXII: storage and keyset-paginated reads (no HTTP here).

Each peer has two read-only collections: referrals received from it and referrals sent to it.
A collection's id is a UUIDv5 of (peer, direction), stable across restarts and stores.

Objects are kept one row per (collection, STIX id, version) with the time they were added.
Within a collection, ``added_us`` never decreases as ``pk`` grows (an insert takes
max(now, newest added_us)), so (added_us, pk) is one total order that matches the order of
addition. Every page is a range scan of the index (collection, added_us, pk) that starts where
the previous page ended: the cost of a page does not depend on the size of the collection.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import Connection, and_, func, insert, or_, select, update

from hotline.core.encoding import from_us
from hotline.errors import InputError
from hotline.referrals._schema import taxii_objects
from hotline.referrals.stix import object_version

#: Most objects in one TAXII page (the client asks with ``limit``; more is clamped to this).
MAX_PAGE: Final = 1_000
#: Most values in one ``match[...]`` filter.
MAX_MATCH_VALUES: Final = 100
#: Rows written per INSERT when many objects arrive at once.
WRITE_BATCH: Final = 1_000
_NAMESPACE: Final = uuid.UUID("6b0b6a52-3f55-4c9e-9f0b-2f3a4c0d7e11")


class Direction(StrEnum):
    RECEIVED = "received"  # referrals the peer sent us
    SENT = "sent"  # referrals we sent the peer


@dataclass(frozen=True, slots=True)
class Collection:
    id: str
    peer: str
    direction: Direction

    @property
    def title(self) -> str:
        if self.direction is Direction.RECEIVED:
            return f"Referrals received from {self.peer}"
        return f"Referrals sent to {self.peer}"


def collection_id(peer: str, direction: Direction) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{peer}\x00{direction.value}"))


def collections_for(peers: Iterable[str]) -> list[Collection]:
    return [
        Collection(collection_id(p, d), p, d)
        for p in sorted(peers)
        for d in (Direction.RECEIVED, Direction.SENT)
    ]


def _version_key(version: str) -> datetime:
    """A version timestamp as a datetime, so "…00Z" and "…00.000Z" compare equal."""
    try:
        return datetime.fromisoformat(version.replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


def add_objects(
    conn: Connection,
    collection: str,
    case_id: str,
    objects: Sequence[dict[str, Any]],
    now_us: int,
) -> int:
    """Add STIX objects to ``collection`` in the caller's transaction; returns how many were new.

    A version already present (same id and version) is skipped; ``latest``/``first`` flags
    follow the versions' timestamps.
    """
    newest = conn.execute(
        select(func.max(taxii_objects.c.added_us)).where(taxii_objects.c.collection == collection)
    ).scalar()
    added_us = max(now_us, int(newest or 0))
    rows: list[dict[str, Any]] = []
    known: dict[str, list[_Version]] = {}
    t = taxii_objects.c
    for start in range(0, len(objects), WRITE_BATCH):
        chunk = objects[start : start + WRITE_BATCH]
        ids = sorted({str(o["id"]) for o in chunk} - set(known))
        for r in conn.execute(
            select(t.pk, t.stix_id, t.version, t.latest, t.first).where(
                and_(t.collection == collection, t.stix_id.in_(ids))
            )
        ):
            known.setdefault(r.stix_id, []).append(
                _Version(r.version, bool(r.latest), bool(r.first), pk=r.pk)
            )
        for obj in chunk:
            row = _new_row(conn, collection, case_id, obj, added_us, known)
            if row is not None:
                rows.append(row)
    for start in range(0, len(rows), WRITE_BATCH):
        conn.execute(insert(taxii_objects), rows[start : start + WRITE_BATCH])
    return len(rows)


@dataclass(slots=True)
class _Version:
    """A version of an object in the store (``pk``) or queued in this call (``row``)."""

    version: str
    latest: bool
    first: bool
    pk: int | None = None
    row: dict[str, Any] | None = None

    def clear(self, conn: Connection, flag: str) -> None:
        setattr(self, flag, False)
        if self.row is not None:
            self.row[flag] = 0
        else:
            conn.execute(
                update(taxii_objects).where(taxii_objects.c.pk == self.pk).values({flag: 0})
            )


def _new_row(
    conn: Connection,
    collection: str,
    case_id: str,
    obj: dict[str, Any],
    added_us: int,
    known: dict[str, list[_Version]],
) -> dict[str, Any] | None:
    stix_id = str(obj["id"])
    version = object_version(obj)[:40]
    versions = known.setdefault(stix_id, [])
    if any(v.version == version for v in versions):
        return None
    key = _version_key(version)
    latest = next((v for v in versions if v.latest), None)
    first = next((v for v in versions if v.first), None)
    is_latest = latest is None or key > _version_key(latest.version)
    is_first = first is None or key < _version_key(first.version)
    if is_latest and latest is not None:
        latest.clear(conn, "latest")
    if is_first and first is not None:
        first.clear(conn, "first")
    row = {
        "collection": collection,
        "stix_id": stix_id,
        "stix_type": str(obj["type"])[:64],
        "version": version,
        "spec_version": str(obj.get("spec_version", "2.1"))[:8],
        "case_id": case_id,
        "added_us": added_us,
        "latest": int(is_latest),
        "first": int(is_first),
        "object": json.dumps(obj, ensure_ascii=False, separators=(",", ":")),
    }
    versions.append(_Version(version, is_latest, is_first, row=row))
    return row


# -- reading ---------------------------------------------------------------------------------


def format_timestamp(us: int) -> str:
    """A TAXII timestamp: RFC 3339, UTC, microsecond precision."""
    return from_us(us).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str, *, what: str) -> int:
    """Microseconds since the epoch of an RFC 3339 timestamp given by a TAXII client."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise InputError(f"{what}: not an RFC 3339 timestamp: {text[:40]!r}") from e
    if moment.tzinfo is None:
        raise InputError(f"{what}: the timestamp must give its UTC offset")
    delta = moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(frozen=True, slots=True)
class Filters:
    """TAXII 2.1 filters of a get-objects or get-manifest request (section 3.6)."""

    added_after_us: int | None = None
    ids: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    versions: tuple[str, ...] = ("last",)
    spec_versions: tuple[str, ...] = ()


def _split(value: str | None, *, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    parts = tuple(p for p in value.split(",") if p)
    if len(parts) > MAX_MATCH_VALUES:
        raise InputError(f"{what}: at most {MAX_MATCH_VALUES} values")
    return parts


def make_filters(
    *,
    added_after: str | None,
    match_id: str | None,
    match_type: str | None,
    match_version: str | None,
    match_spec_version: str | None,
) -> Filters:
    return Filters(
        added_after_us=(
            None if added_after is None else parse_timestamp(added_after, what="added_after")
        ),
        ids=_split(match_id, what="match[id]"),
        types=_split(match_type, what="match[type]"),
        versions=_split(match_version, what="match[version]") or ("last",),
        spec_versions=_split(match_spec_version, what="match[spec_version]"),
    )


def encode_next(added_us: int, pk: int) -> str:
    return f"{added_us}.{pk}"


def decode_next(token: str) -> tuple[int, int]:
    added, sep, pk = token.partition(".")
    if not (sep and added.isdigit() and pk.isdigit() and len(added) <= 19 and len(pk) <= 19):
        raise InputError("next: not a token this server gave out")
    return int(added), int(pk)


@dataclass(frozen=True, slots=True)
class Row:
    pk: int
    stix_id: str
    version: str
    added_us: int
    object: str | None


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[Row]
    more: bool
    next: str | None


def _version_clause(versions: tuple[str, ...]) -> Any:
    clauses: list[Any] = []
    exact: list[str] = []
    for v in versions:
        if v == "all":
            return None
        if v == "last":
            clauses.append(taxii_objects.c.latest == 1)
        elif v == "first":
            clauses.append(taxii_objects.c.first == 1)
        else:
            exact.append(v)
    if exact:
        clauses.append(taxii_objects.c.version.in_(exact))
    return or_(*clauses)


def read_page(
    conn: Connection,
    collection: str,
    filters: Filters,
    *,
    limit: int,
    after: tuple[int, int] | None,
    with_objects: bool = True,
) -> Page:
    """One page of a collection in order of addition, from ``after`` (a ``next`` token) on."""
    limit = max(1, min(limit, MAX_PAGE))
    t = taxii_objects.c
    columns = [t.pk, t.stix_id, t.version, t.added_us]
    if with_objects:
        columns.append(t.object)
    query = select(*columns).where(t.collection == collection)
    if after is not None:
        added, pk = after
        query = query.where(and_(t.added_us >= added, or_(t.added_us > added, t.pk > pk)))
    if filters.added_after_us is not None:
        query = query.where(t.added_us > filters.added_after_us)
    if filters.ids:
        query = query.where(t.stix_id.in_(filters.ids))
    if filters.types:
        query = query.where(t.stix_type.in_(filters.types))
    if filters.spec_versions:
        query = query.where(t.spec_version.in_(filters.spec_versions))
    version_clause = _version_clause(filters.versions)
    if version_clause is not None:
        query = query.where(version_clause)
    result = list(conn.execute(query.order_by(t.added_us, t.pk).limit(limit + 1)))
    more = len(result) > limit
    rows = [
        Row(r.pk, r.stix_id, r.version, r.added_us, r.object if with_objects else None)
        for r in result[:limit]
    ]
    token = encode_next(rows[-1].added_us, rows[-1].pk) if more and rows else None
    return Page(rows, more, token)


__all__ = [
    "MAX_PAGE",
    "Collection",
    "Direction",
    "Filters",
    "Page",
    "Row",
    "add_objects",
    "collection_id",
    "collections_for",
    "decode_next",
    "encode_next",
    "format_timestamp",
    "make_filters",
    "parse_timestamp",
    "read_page",
]
