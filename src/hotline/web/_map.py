"""The Map page's data: own and peers' volumes, and the conflicts between them.

Volumes come from two places: the deconfliction registry's active volumes (own plans filed with
``hotline deconflict``, and peers' notifications the node assessed on arrival), and the activity
notifications this node sent (own) and received (each peer's), read from the messages with
``hotline.deconfliction.activity_volumes`` (the registry's own naming, ``<message id>/<n>``, so
a volume in both is drawn once); a notification it refuses is left off the map (and counted).
Conflicts are found by the deconfliction ``Engine`` (exact, 4D), own against peers only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final

import shapely
from shapely.geometry import mapping
from sqlalchemy import Connection, and_, desc, func, select

from hotline.deconfliction import (
    OWN,
    Conflict,
    ConflictKind,
    Engine,
    Shape,
    ShapeKind,
    Volume,
    activity_volumes,
    draft_response,
    volumes_table,
)
from hotline.errors import HotlineError
from hotline.store.schema import messages

#: Activity notifications read for the map, newest first.
MAX_NOTIFICATIONS: Final = 500
#: Registry volumes read for the map.
MAX_REGISTRY_VOLUMES: Final = 5_000
#: Volumes that ended longer ago than this are left off the map.
SHOW_ENDED_FOR_US: Final = 24 * 3600 * 1_000_000
#: Coordinates are rounded to this many decimals in the page's data (about 1 m).
COORD_DECIMALS: Final = 5


@dataclass(slots=True)
class MapVolume:
    volume: Volume
    #: The notification this volume came from; None for a registry volume.
    message_id: str | None


@dataclass(slots=True)
class MapData:
    volumes: list[MapVolume] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    #: Notifications whose volumes could not be read.
    refused: int = 0

    def message_of(self, volume: Volume) -> str | None:
        for mv in self.volumes:
            if mv.volume.key == volume.key:
                return mv.message_id
        return None


def _registry_volumes(conn: Connection, now_us: int) -> list[Volume]:
    t = volumes_table
    rows = conn.execute(
        select(
            t.c.owner,
            t.c.id,
            t.c.version,
            t.c.kind,
            t.c.geometry,
            t.c.radius_m,
            t.c.half_width_m,
            t.c.max_error_m,
            t.c.footprint,
            t.c.altitude_lower,
            t.c.altitude_upper,
            t.c.time_start_us,
            t.c.time_end_us,
        )
        .where(and_(t.c.removed_at_us.is_(None), t.c.time_end_us > now_us - SHOW_ENDED_FOR_US))
        .order_by(desc(t.c.time_start_us))
        .limit(MAX_REGISTRY_VOLUMES)
    ).all()
    if not rows:
        return []
    footprints = shapely.from_wkb([r.footprint for r in rows])
    return [
        Volume(
            id=r.id,
            footprint=fp,
            altitude_lower=r.altitude_lower,
            altitude_upper=r.altitude_upper,
            time_start_us=r.time_start_us,
            time_end_us=r.time_end_us,
            shape=Shape(
                ShapeKind(r.kind),
                "" if r.kind == ShapeKind.POLYGON else (r.geometry or ""),
                radius_m=r.radius_m,
                half_width_m=r.half_width_m,
            ),
            owner=r.owner,
            version=r.version,
            max_error_m=r.max_error_m,
        )
        for r, fp in zip(rows, footprints, strict=True)
    ]


def map_version(conn: Connection, now_us: int) -> tuple[int, ...]:
    """Changes whenever what ``load_map`` would return may change: a notification, a registry
    change, or another hour passing (volumes leave the map a day after they end; the time
    slider itself works in the browser)."""
    notes = conn.execute(
        select(func.count(), func.max(messages.c.noted_at_us)).where(
            messages.c.msg_type == "activity_notification"
        )
    ).one()
    vols = conn.execute(select(func.count(), func.max(volumes_table.c.updated_at_us))).one()
    return (
        int(notes[0] or 0),
        int(notes[1] or 0),
        int(vols[0] or 0),
        int(vols[1] or 0),
        now_us // 3_600_000_000,
    )


def _message_of_id(volume_id: str) -> str | None:
    """The notification a volume came from, by the registry's naming (``<message id>/<n>``)."""
    head, sep, tail = volume_id.rpartition("/")
    return head if sep and len(head) == 36 and tail.isdigit() else None


def load_map(conn: Connection, now_us: int) -> MapData:
    data = MapData()
    by_key: dict[tuple[str, str], MapVolume] = {}
    for volume in _registry_volumes(conn, now_us):
        by_key[volume.key] = MapVolume(volume, _message_of_id(volume.id))
    rows = conn.execute(
        select(messages.c.id, messages.c.direction, messages.c.peer, messages.c.body)
        .where(and_(messages.c.msg_type == "activity_notification", messages.c.kind == "message"))
        .order_by(desc(messages.c.noted_at_us))  # our clock, not the peer's claim (P9)
        .limit(MAX_NOTIFICATIONS)
    )
    for row in rows:
        owner = OWN if row.direction == "out" else row.peer
        try:
            # The same naming as the node's registry, so a volume already there is one volume.
            vols = activity_volumes(row.id, json.loads(row.body), owner=owner)
        except (HotlineError, ValueError, KeyError, TypeError):
            data.refused += 1
            continue
        for v in vols:
            if v.time_end_us > now_us - SHOW_ENDED_FOR_US:
                by_key[v.key] = MapVolume(v, row.id)
    data.volumes = list(by_key.values())
    engine = Engine(workers=1)
    engine.add(mv.volume for mv in data.volumes)
    peers = [mv.volume for mv in data.volumes if mv.volume.owner != OWN]
    data.conflicts = [c for c in engine.conflicts(peers) if c.kind == ConflictKind.OWN_VS_PEER]
    return data


def _geometry(geom: Any) -> dict[str, Any]:
    rounded = shapely.set_precision(geom, 10**-COORD_DECIMALS)
    out: dict[str, Any] = mapping(rounded if not rounded.is_empty else geom)
    as_lists: dict[str, Any] = json.loads(json.dumps(out))  # tuples to lists
    return as_lists


def to_json(data: MapData) -> dict[str, Any]:
    """What the map script draws: volumes and conflicts, times in ms since the epoch."""
    volumes = [
        {
            "key": f"{mv.volume.owner}:{mv.volume.id}",
            "owner": mv.volume.owner,
            "own": mv.volume.owner == OWN,
            "id": mv.volume.id,
            "message": mv.message_id,
            "t0": mv.volume.time_start_us // 1000,
            "t1": mv.volume.time_end_us // 1000,
            "lower": mv.volume.altitude_lower,
            "upper": mv.volume.altitude_upper,
            "geometry": _geometry(mv.volume.footprint),
        }
        for mv in data.volumes
    ]
    conflicts = []
    for i, c in enumerate(data.conflicts):
        mine, theirs = (c.query, c.active) if c.query.owner == OWN else (c.active, c.query)
        conflicts.append(
            {
                "n": i + 1,
                "own": f"{mine.owner}:{mine.id}",
                "peer": f"{theirs.owner}:{theirs.id}",
                "peer_name": theirs.owner,
                "own_message": data.message_of(mine),
                "peer_message": data.message_of(theirs),
                "t0": c.time_start_us // 1000,
                "t1": c.time_end_us // 1000,
                "lower": c.altitude_lower,
                "upper": c.altitude_upper,
                "area_km2": round(c.area_m2 / 1e6, 2),
                "geometry": _geometry(shapely.intersection(mine.footprint, theirs.footprint)),
            }
        )
    return {"volumes": volumes, "conflicts": conflicts, "refused": data.refused}


def draft_for(data: MapData, peer_message_id: str) -> str | None:
    """A draft response to a peer's notification naming its conflicts with our activities."""
    theirs = [mv.volume for mv in data.volumes if mv.message_id == peer_message_id]
    if not theirs:
        return None
    keys = {v.key for v in theirs}
    conflicts = [c for c in data.conflicts if c.query.key in keys or c.active.key in keys]
    return draft_response(theirs[0].owner, theirs, conflicts)


__all__ = [
    "MapData",
    "MapVolume",
    "draft_for",
    "load_map",
    "map_version",
    "to_json",
]
