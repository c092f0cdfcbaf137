"""The 4D volume: a footprint in WGS84 lon/lat x a closed altitude band x a half-open time window.

A ``Volume`` is built only by the parsers (``_parse``) or the store (``_store``), which check every
invariant first; the constructor re-checks the cheap ones so that no invalid volume exists.

Semantics (docs/deconfliction.md):
- footprints are planar in lon/lat (RFC 7946: an edge is a straight line between two positions);
  footprints that touch (a shared edge or vertex) intersect;
- altitude bands are closed, ``[lower, upper]`` in metres: bands that touch conflict;
- time windows are half-open, ``[start, end)`` in microseconds since the Unix epoch (UTC): an
  activity that ends at 10:00 does not conflict with one that starts at 10:00.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from shapely.geometry import mapping

from hotline.errors import InputError

#: The owner of the node's own planned activities; any other owner is a peer's name.
OWN = "own"

#: Longest volume id we accept (ids travel in messages and the console).
MAX_ID_LENGTH = 128
#: Longest owner (peer) name, as in the store's ``peers.name``.
MAX_OWNER_LENGTH = 64

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ShapeKind(StrEnum):
    """How the footprint was given: kept so that export gives back what was entered."""

    POLYGON = "polygon"
    CIRCLE = "circle"
    CORRIDOR = "corridor"


def to_us(t: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime (exact integer arithmetic)."""
    delta = t - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def format_time(us: int) -> str:
    """RFC 3339 in UTC with a ``Z``; microseconds only when there are any."""
    t = from_us(us)
    if t.microsecond:
        return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Shape:
    """How the footprint was given, kept so that export gives back what was entered.

    A polygon needs nothing more (its footprint is the polygon as given); a circle keeps its
    centre and radius, a corridor its centre line and half-width. The GeoJSON geometry of a
    circle or corridor is kept as compact JSON text (read back only on export: a million
    volumes load without parsing it).
    """

    kind: ShapeKind
    #: GeoJSON geometry of a circle (Point) or corridor (LineString) as JSON text; "" for polygons.
    geometry_json: str = ""
    radius_m: float | None = None
    half_width_m: float | None = None

    @staticmethod
    def circle(centre: tuple[float, float], radius_m: float) -> Shape:
        geo = {"type": "Point", "coordinates": list(centre)}
        return Shape(ShapeKind.CIRCLE, json.dumps(geo, separators=(",", ":")), radius_m=radius_m)

    @staticmethod
    def corridor(line: Sequence[tuple[float, float]], half_width_m: float) -> Shape:
        geo = {"type": "LineString", "coordinates": [list(p) for p in line]}
        text = json.dumps(geo, separators=(",", ":"))
        return Shape(ShapeKind.CORRIDOR, text, half_width_m=half_width_m)

    @property
    def points(self) -> tuple[tuple[float, float], ...]:
        """Circle: ``(centre,)``; corridor: the centre line; polygon: empty."""
        if not self.geometry_json:
            return ()
        coords = json.loads(self.geometry_json)["coordinates"]
        if self.kind == ShapeKind.CIRCLE:
            coords = [coords]
        return tuple((float(p[0]), float(p[1])) for p in coords)


#: The one Shape every polygon volume shares (saves memory with a million volumes).
POLYGON_SHAPE = Shape(ShapeKind.POLYGON)


@dataclass(frozen=True, slots=True, eq=False)
class Volume:
    """One 4D volume of an activity. Identity is ``(owner, id)``; ``version`` counts its changes."""

    id: str
    #: shapely Polygon or MultiPolygon in lon/lat degrees, valid, within (-180, 180) x (-90, 90).
    footprint: Any
    altitude_lower: float
    altitude_upper: float
    time_start_us: int
    time_end_us: int
    shape: Shape
    owner: str = OWN
    version: int = 1
    #: The footprint's stated maximum outward error in metres (0 for polygons).
    max_error_m: float = field(default=0.0)

    def __post_init__(self) -> None:
        where = {"feature": self.id}
        if not self.id or len(self.id) > MAX_ID_LENGTH:
            raise InputError(
                f"volume id must be 1 to {MAX_ID_LENGTH} characters",
                fields={**where, "field": "id"},
            )
        if not self.owner or len(self.owner) > MAX_OWNER_LENGTH:
            raise InputError("bad owner name", fields={**where, "field": "owner"})
        if not (math.isfinite(self.altitude_lower) and math.isfinite(self.altitude_upper)):
            raise InputError(
                "altitudes must be finite", fields={**where, "field": "altitude_lower"}
            )
        if self.altitude_lower > self.altitude_upper:
            raise InputError(
                f"altitude_lower {self.altitude_lower} is above altitude_upper "
                f"{self.altitude_upper}",
                fields={**where, "field": "altitude_lower"},
            )
        if self.time_end_us <= self.time_start_us:
            raise InputError(
                "time_end must be after time_start", fields={**where, "field": "time_end"}
            )
        if self.version < 1:
            raise InputError("version must be at least 1", fields={**where, "field": "version"})

    @property
    def key(self) -> tuple[str, str]:
        """The identity of the volume across owners: ``(owner, id)``."""
        return (self.owner, self.id)

    @property
    def time_start(self) -> datetime:
        return from_us(self.time_start_us)

    @property
    def time_end(self) -> datetime:
        return from_us(self.time_end_us)

    @property
    def geometry(self) -> dict[str, Any]:
        """The GeoJSON geometry as entered (without any third coordinate)."""
        if self.shape.geometry_json:
            geometry: dict[str, Any] = json.loads(self.shape.geometry_json)
            return geometry
        geo = mapping(self.footprint)
        if geo["type"] == "Polygon":
            coords: Any = [[list(p) for p in ring] for ring in geo["coordinates"]]
        else:
            coords = [[[list(p) for p in ring] for ring in poly] for poly in geo["coordinates"]]
        return {"type": geo["type"], "coordinates": coords}

    def with_owner(self, owner: str, version: int | None = None) -> Volume:
        return Volume(
            id=self.id,
            footprint=self.footprint,
            altitude_lower=self.altitude_lower,
            altitude_upper=self.altitude_upper,
            time_start_us=self.time_start_us,
            time_end_us=self.time_end_us,
            shape=self.shape,
            owner=owner,
            version=self.version if version is None else version,
            max_error_m=self.max_error_m,
        )
