"""The store-backed registry of active volumes: persistence, versions, plans and notifications.

The registry is the I/O shell around the pure engine: it writes every change to the node's store
in one transaction and keeps the in-memory ``Engine`` in step; at start-up ``load(now)`` rebuilds
the engine from the store. "Now" is always passed in, never read from a clock here.

Versions (as ASTM F3548's OVNs): every ``(owner, id)`` has a version that grows by one on each
change, removal included, so that a planner's view can be checked for staleness.
"""

from __future__ import annotations

import builtins
import gc
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    and_,
    select,
    update,
)
from sqlalchemy import (
    Engine as SqlEngine,
)
from sqlalchemy.exc import SQLAlchemyError

from hotline.deconfliction._conflict import Conflict, ConflictKind, Engine
from hotline.deconfliction._index import Columns, pack_columns
from hotline.deconfliction._volume import OWN, POLYGON_SHAPE, Shape, ShapeKind, Volume
from hotline.errors import ErrorCode, NotFoundError, ProtocolError, StorageError
from hotline.store.db import create_store_engine, migrate, sqlite_url
from hotline.store.schema import metadata

#: Rows written per INSERT statement when many volumes are added at once.
WRITE_BATCH = 5_000
#: Rows read per fetch when loading (bounds memory of one fetch).
READ_BATCH = 50_000

# One row per (owner, id): the newest version of each volume, a removed one kept with
# ``removed_at_us`` so that its version keeps growing if the id comes back.
volumes_table = Table(
    "deconfliction_volumes",
    metadata,
    Column("owner", String(64), primary_key=True),
    Column("id", String(128), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("kind", String(16), nullable=False),  # polygon | circle | corridor
    Column("geometry", Text, nullable=False),  # GeoJSON geometry as entered
    Column("radius_m", Float, nullable=True),
    Column("half_width_m", Float, nullable=True),
    Column("max_error_m", Float, nullable=False),
    Column("footprint", LargeBinary, nullable=False),  # WKB of the footprint in lon/lat
    Column("altitude_lower", Float, nullable=False),
    Column("altitude_upper", Float, nullable=False),
    Column("time_start_us", BigInteger, nullable=False),
    Column("time_end_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    Column("removed_at_us", BigInteger, nullable=True),
)
Index("ix_deconfliction_volumes_time_end", volumes_table.c.time_end_us)


class StalePlanError(ProtocolError):
    """A plan based on a stale view: ``fields["changed"]`` lists what changed since."""

    default_code = ErrorCode.INVALID_STATE

    def __init__(self, changed: list[dict[str, Any]]) -> None:
        names = ", ".join(f"{c['owner']}/{c['id']}" for c in changed)
        super().__init__(
            f"the plan is based on a stale view; changed since: {names}",
            fields={"changed": changed},
        )
        self.changed = changed


@dataclass(frozen=True, slots=True)
class PlanResult:
    """A filed plan: the volumes as stored (with their new versions) and their conflicts."""

    volumes: list[Volume]
    conflicts: list[Conflict]


@dataclass(frozen=True, slots=True)
class NotificationAssessment:
    """What an ``activity_notification`` means for us: conflicts and a draft ``response``."""

    peer: str
    volumes: list[Volume]
    #: Every conflict of the peer's volumes: with ours (own_vs_peer) and others' (peer_vs_peer).
    conflicts: list[Conflict]
    #: Draft response text in English naming the conflicts with our activities.
    draft_response: str

    @property
    def actionable(self) -> list[Conflict]:
        return [c for c in self.conflicts if c.kind == ConflictKind.OWN_VS_PEER]


def _row(v: Volume, now_us: int) -> dict[str, Any]:
    return {
        "owner": v.owner,
        "id": v.id,
        "version": v.version,
        "kind": str(v.shape.kind),
        "geometry": v.shape.geometry_json or json.dumps(v.geometry, separators=(",", ":")),
        "radius_m": v.shape.radius_m,
        "half_width_m": v.shape.half_width_m,
        "max_error_m": v.max_error_m,
        "footprint": shapely.to_wkb(v.footprint),
        "altitude_lower": v.altitude_lower,
        "altitude_upper": v.altitude_upper,
        "time_start_us": v.time_start_us,
        "time_end_us": v.time_end_us,
        "updated_at_us": now_us,
        "removed_at_us": None,
    }


def draft_response(peer: str, volumes: Sequence[Volume], conflicts: Sequence[Conflict]) -> str:
    """Plain English text for the operator to edit and send as the ``response``."""
    ours = [c for c in conflicts if c.kind == ConflictKind.OWN_VS_PEER]
    n = len(volumes)
    if not ours:
        return (
            f"We acknowledge your activity notification ({n} volume{'s' * (n != 1)}). "
            "It does not conflict with our planned activities."
        )
    lines = [
        f"We acknowledge your activity notification ({n} volume{'s' * (n != 1)}). "
        f"It conflicts with our planned activities in {len(ours)} "
        f"place{'s' * (len(ours) != 1)}:"
    ]
    for c in ours:
        theirs, mine = (c.query, c.active) if c.query.owner != OWN else (c.active, c.query)
        t0 = c.to_dict()["time_start"]
        t1 = c.to_dict()["time_end"]
        lines.append(
            f"- your volume {theirs.id} (version {theirs.version}) and our volume {mine.id} "
            f"(version {mine.version}): {t0} to {t1}, {c.altitude_lower:g} m to "
            f"{c.altitude_upper:g} m, {c.area_m2 / 1e6:.2f} km2 in common."
        )
    lines.append("We request that you amend these activities or contact us to deconflict them.")
    return "\n".join(lines)


class Registry:
    """Active volumes of this node (own and every peer's), persisted in the node's store."""

    def __init__(self, engine: SqlEngine, *, workers: int = 2) -> None:
        self.db = engine
        self.engine = Engine(workers=workers)

    @classmethod
    def open(cls, store: Path | str, *, now_us: int, workers: int = 2) -> Registry:
        """Open (and migrate) a store and load the active volumes: ``store`` is a store URL (a
        node's ``store_url``) or a directory holding ``store.sqlite``."""
        url = store if isinstance(store, str) else sqlite_url(Path(store) / "store.sqlite")
        db = create_store_engine(url)
        migrate(db)
        reg = cls(db, workers=workers)
        reg.load(now_us)
        return reg

    # ---- reading -------------------------------------------------------------------------------

    def load(self, now_us: int) -> int:
        """Rebuild the engine from the store: volumes neither removed nor ended at ``now_us``."""
        engine = Engine(workers=self.engine.workers)
        # The driver's own cursor: a million rows through SQLAlchemy's result layer cost seconds.
        mark = "?" if self.db.dialect.paramstyle == "qmark" else "%s"
        try:
            with self.db.connect() as conn:
                cursor = conn.connection.cursor()
                try:
                    cursor.execute(_COUNT_SQL.replace(":now", mark), (now_us,))
                    (count,) = cursor.fetchone() or (0,)
                    engine.reserve(int(count))
                    cursor.execute(_LOAD_SQL.replace(":now", mark), (now_us,))
                    while rows := cursor.fetchmany(READ_BATCH):
                        engine.add_columns(_columns_from_rows(rows), rebuild=False)
                finally:
                    cursor.close()
        except (SQLAlchemyError, self.db.dialect.loaded_dbapi.Error) as e:
            raise StorageError(f"loading volumes failed: {e}") from e
        engine.rebuild()
        self.engine = engine
        # A million long-lived volumes: keep the cyclic garbage collector from walking them all
        # again and again (its full passes would stall queries for tens of milliseconds).
        gc.freeze()
        return len(engine)

    def list(self, *, owner: str | None = None) -> list[Volume]:
        vols = self.engine.volumes()
        if owner is not None:
            vols = [v for v in vols if v.owner == owner]
        return sorted(vols, key=lambda v: (v.owner != OWN, v.owner, v.id))

    def versions(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """Current versions (removed ones included) of ``keys`` found in the store."""
        by_owner: dict[str, list[str]] = {}
        for owner, vid in keys:
            by_owner.setdefault(owner, []).append(vid)
        out: dict[tuple[str, str], int] = {}
        t = volumes_table
        try:
            with self.db.connect() as conn:
                for owner, ids in by_owner.items():
                    for i in range(0, len(ids), 500):
                        chunk = ids[i : i + 500]
                        q = select(t.c.id, t.c.version, t.c.removed_at_us).where(
                            and_(t.c.owner == owner, t.c.id.in_(chunk))
                        )
                        for vid, version, _removed in conn.execute(q):
                            out[(owner, vid)] = int(version)
        except SQLAlchemyError as e:
            raise StorageError(f"reading versions failed: {e}") from e
        return out

    # ---- writing -------------------------------------------------------------------------------

    def add(self, volumes: Sequence[Volume], *, now_us: int) -> builtins.list[Volume]:
        """Store volumes (new, or new versions of existing ones) and index them.

        The version of each is one more than the stored one (1 when new); the returned volumes
        carry their versions.
        """
        if not volumes:
            return []
        current = self.versions(v.key for v in volumes)
        stored = [v.with_owner(v.owner, current.get(v.key, 0) + 1) for v in volumes]
        t = volumes_table
        try:
            with self.db.begin() as conn:
                fresh = [_row(v, now_us) for v in stored if v.key not in current]
                for i in range(0, len(fresh), WRITE_BATCH):
                    conn.execute(t.insert(), fresh[i : i + WRITE_BATCH])
                for v in stored:
                    if v.key in current:
                        row = _row(v, now_us)
                        conn.execute(
                            update(t)
                            .where(and_(t.c.owner == v.owner, t.c.id == v.id))
                            .values(**row)
                        )
        except SQLAlchemyError as e:
            raise StorageError(f"storing volumes failed: {e}") from e
        self.engine.add(stored)
        return stored

    def remove(self, key: tuple[str, str], *, now_us: int) -> Volume:
        """Remove an active volume (its version grows by one); NotFoundError when not active."""
        v = self.engine.get(key)
        if v is None:
            raise NotFoundError(
                f"no active volume {key[1]!r} of {key[0]!r}",
                fields={"feature": key[1], "owner": key[0]},
            )
        t = volumes_table
        try:
            with self.db.begin() as conn:
                conn.execute(
                    update(t)
                    .where(and_(t.c.owner == key[0], t.c.id == key[1]))
                    .values(version=t.c.version + 1, removed_at_us=now_us, updated_at_us=now_us)
                )
        except SQLAlchemyError as e:
            raise StorageError(f"removing a volume failed: {e}") from e
        self.engine.remove(key)
        return v

    def expire(self, now_us: int) -> builtins.list[Volume]:
        """Drop from the engine every volume that has ended at ``now_us`` (rows stay as history)."""
        return self.engine.expire(now_us)

    # ---- plans and notifications ---------------------------------------------------------------

    def file_plan(
        self,
        volumes: Sequence[Volume],
        *,
        seen: Mapping[tuple[str, str], int],
        now_us: int,
    ) -> PlanResult:
        """File or change own volumes, stating the versions of what the planner has seen.

        ``seen`` maps ``(owner, id)`` to the version the planner based the plan on. It must
        cover every active volume the plan conflicts with and every own volume the plan replaces,
        at their current versions, and every version it names must still be current; otherwise
        ``StalePlanError`` lists what changed since and nothing is stored. A plan that conflicts
        is filed (the conflicts are returned for the operators): only a stale view is refused.
        """
        own = [v.with_owner(OWN) for v in volumes]
        self.engine.expire(now_us)
        conflicts = self.engine.conflicts(own)
        relevant: set[tuple[str, str]] = {c.active.key for c in conflicts}
        relevant |= set(seen)
        current = self.versions(relevant | {v.key for v in own})
        active_now = {key for key in current if key in self.engine}
        changed: list[dict[str, Any]] = []
        for key in sorted(relevant | {v.key for v in own if v.key in active_now}):
            now_version = current.get(key) if key in active_now else None
            if seen.get(key) != now_version:
                changed.append(
                    {
                        "owner": key[0],
                        "id": key[1],
                        "seen_version": seen.get(key),
                        "current_version": now_version,
                    }
                )
        if changed:
            raise StalePlanError(changed)
        stored = self.add(own, now_us=now_us)
        by_key = {v.key: v for v in stored}
        conflicts = self.engine.conflicts([by_key[v.key] for v in own])
        return PlanResult(stored, conflicts)

    def receive_notification(
        self, peer: str, volumes: Sequence[Volume], *, now_us: int
    ) -> NotificationAssessment:
        """Store a peer's notified volumes and assess them against every active volume."""
        if peer == OWN:
            raise ProtocolError("a peer cannot be named 'own'", fields={"owner": peer})
        theirs = [v.with_owner(peer) for v in volumes]
        self.engine.expire(now_us)
        stored = self.add(theirs, now_us=now_us)
        return assess_notification(self.engine, peer, stored)


def assess_notification(
    engine: Engine, peer: str, volumes: Sequence[Volume]
) -> NotificationAssessment:
    """Conflicts of a peer's notified volumes with the engine's, and a draft response."""
    theirs = [v if v.owner == peer else v.with_owner(peer) for v in volumes]
    conflicts = engine.conflicts(theirs)
    return NotificationAssessment(
        peer=peer,
        volumes=theirs,
        conflicts=conflicts,
        draft_response=draft_response(peer, theirs, conflicts),
    )


# Only what the engine needs; a polygon's GeoJSON is not read back (the footprint is the polygon).
_COUNT_SQL = (
    "SELECT count(*) FROM deconfliction_volumes WHERE removed_at_us IS NULL AND time_end_us > :now"
)
_LOAD_SQL = (
    "SELECT owner, id, version, kind, "
    "CASE WHEN kind = 'polygon' THEN NULL ELSE geometry END AS geometry, "
    "radius_m, half_width_m, max_error_m, footprint, altitude_lower, altitude_upper, "
    "time_start_us, time_end_us FROM deconfliction_volumes "
    "WHERE removed_at_us IS NULL AND time_end_us > :now"
)


def _shape(kind: str, geometry: str | None, radius: float | None, half: float | None) -> Shape:
    if kind == ShapeKind.POLYGON:
        return POLYGON_SHAPE
    return Shape(ShapeKind(kind), geometry or "", radius_m=radius, half_width_m=half)


def _columns_from_rows(rows: Sequence[Any]) -> Columns:
    """Rows of ``_LOAD_SQL`` as columns (no Volume objects: a million load in seconds)."""
    owner, vid, version, kind, geometry, radius, half, err, wkb, lo, hi, ts, te = zip(
        *rows, strict=True
    )
    geoms = shapely.from_wkb(np.array(wkb, dtype=object))
    bounds = shapely.bounds(geoms).reshape(-1, 4)
    shapes: list[Shape | None] = [
        None if k == ShapeKind.POLYGON else _shape(k, g, r, h)
        for k, g, r, h in zip(kind, geometry, radius, half, strict=True)
    ]
    return Columns(
        ids=list(vid),
        owners=list(owner),
        versions=np.array(version, dtype=np.int64),
        shapes=shapes,
        errors=np.array(err, dtype=np.float64),
        geoms=geoms,
        box=pack_columns(
            bounds,
            np.array(ts, dtype=np.int64),
            np.array(te, dtype=np.int64),
            np.array(lo, dtype=np.float64),
            np.array(hi, dtype=np.float64),
        ),
    )
