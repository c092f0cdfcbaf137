"""The structure of footprints and 4D volumes in an activity notification.

Here we check shape, ranges and sizes only: coordinates in range, rings closed, vertex counts
bounded, lower <= upper, start < end. Whether a polygon is simple, and what overlaps what, is
the job of ``hotline.deconfliction``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import Field, model_validator

from hotline.compose._base import StrictModel
from hotline.compose._types import Position, UtcDateTime
from hotline.compose.limits import (
    MAX_ALTITUDE_M,
    MAX_FOOTPRINT_VERTICES,
    MAX_POLYGONS,
    MAX_RADIUS_M,
    MAX_RING_VERTICES,
    MAX_RINGS,
    MAX_WINDOW_DAYS,
    MIN_ALTITUDE_M,
)

#: A closed linear ring: at least four positions, the first equal to the last.
Ring = Annotated[list[Position], Field(min_length=4, max_length=MAX_RING_VERTICES)]
#: A polygon's rings: the outer ring first, then holes.
PolygonRings = Annotated[list[Ring], Field(min_length=1, max_length=MAX_RINGS)]


def _check_rings(rings: list[list[tuple[float, float]]]) -> None:
    for ring in rings:
        if ring[0] != ring[-1]:
            raise ValueError("each ring must be closed: its last position must equal its first")


class Polygon(StrictModel):
    """A GeoJSON Polygon (RFC 7946 section 3.1.6)."""

    type: Literal["Polygon"]
    coordinates: PolygonRings

    @model_validator(mode="after")
    def _closed_and_bounded(self) -> Polygon:
        _check_rings(self.coordinates)
        if self.vertex_count() > MAX_FOOTPRINT_VERTICES:
            raise ValueError(f"more than {MAX_FOOTPRINT_VERTICES} vertices in one footprint")
        return self

    def vertex_count(self) -> int:
        return sum(len(ring) for ring in self.coordinates)


class MultiPolygon(StrictModel):
    """A GeoJSON MultiPolygon (RFC 7946 section 3.1.7)."""

    type: Literal["MultiPolygon"]
    coordinates: Annotated[list[PolygonRings], Field(min_length=1, max_length=MAX_POLYGONS)]

    @model_validator(mode="after")
    def _closed_and_bounded(self) -> MultiPolygon:
        for rings in self.coordinates:
            _check_rings(rings)
        if self.vertex_count() > MAX_FOOTPRINT_VERTICES:
            raise ValueError(f"more than {MAX_FOOTPRINT_VERTICES} vertices in one footprint")
        return self

    def vertex_count(self) -> int:
        return sum(len(ring) for rings in self.coordinates for ring in rings)


class LineString(StrictModel):
    """A GeoJSON LineString (RFC 7946 section 3.1.4): the centre line of a corridor."""

    type: Literal["LineString"]
    coordinates: Annotated[list[Position], Field(min_length=2, max_length=MAX_RING_VERTICES)]


class Circle(StrictModel):
    """A circle on the ground: centre [lon, lat] and radius in metres (not GeoJSON)."""

    type: Literal["Circle"]
    center: Position
    radius_m: Annotated[float, Field(gt=0.0, le=MAX_RADIUS_M)]


class Corridor(StrictModel):
    """A corridor: every point within ``half_width_m`` of a line string (not GeoJSON)."""

    type: Literal["Corridor"]
    centerline: LineString
    half_width_m: Annotated[float, Field(gt=0.0, le=MAX_RADIUS_M)]


#: Where on the ground (or sea) a volume lies; tagged by ``type``.
Footprint = Annotated[Polygon | MultiPolygon | Circle | Corridor, Field(discriminator="type")]
#: A footprint for an exercise area: polygons only.
AreaGeometry = Annotated[Polygon | MultiPolygon, Field(discriminator="type")]

Altitude = Annotated[float, Field(ge=MIN_ALTITUDE_M, le=MAX_ALTITUDE_M)]


class AltitudeBand(StrictModel):
    """Heights in metres above mean sea level; negative for depth below it."""

    lower_m: Altitude
    upper_m: Altitude

    @model_validator(mode="after")
    def _ordered(self) -> AltitudeBand:
        if self.lower_m > self.upper_m:
            raise ValueError("lower_m must not be above upper_m")
        return self


class TimeWindow(StrictModel):
    """A half-open interval [start, end) in UTC."""

    start: UtcDateTime
    end: UtcDateTime

    @model_validator(mode="after")
    def _ordered(self) -> TimeWindow:
        if self.start >= self.end:
            raise ValueError("start must be before end")
        if self.end - self.start > timedelta(days=MAX_WINDOW_DAYS):
            raise ValueError(f"a window must not be longer than {MAX_WINDOW_DAYS} days")
        return self


class Volume(StrictModel):
    """A 4D volume: a footprint, an altitude band and a time window."""

    footprint: Footprint
    altitude: AltitudeBand
    window: TimeWindow


__all__ = [
    "AltitudeBand",
    "AreaGeometry",
    "Circle",
    "Corridor",
    "Footprint",
    "LineString",
    "MultiPolygon",
    "Polygon",
    "TimeWindow",
    "Volume",
]
