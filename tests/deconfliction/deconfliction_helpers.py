"""Builders shared by the deconfliction tests (volumes from plain numbers, a brute-force oracle)."""

from __future__ import annotations

from typing import Any

import shapely

from hotline.deconfliction import OWN, Volume, parse_geojson

HOUR_US = 3_600 * 1_000_000
T0 = "2026-03-01T00:00:00Z"
T0_US = 1_772_323_200 * 1_000_000


def iso(hours: float) -> str:
    from hotline.deconfliction import format_time

    return format_time(T0_US + int(hours * HOUR_US))


def feature(
    fid: str,
    geometry: dict[str, Any],
    *,
    lo: float = 0,
    hi: float = 1000,
    t0: float = 0,
    t1: float = 1,
    **extra: Any,
) -> dict[str, Any]:
    props = {"altitude_lower": lo, "altitude_upper": hi, "time_start": iso(t0), "time_end": iso(t1)}
    props.update(extra)
    return {"type": "Feature", "id": fid, "geometry": geometry, "properties": props}


def rect(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    return {"type": "Polygon", "coordinates": [ring]}


def collection(*features: dict[str, Any]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}


def volumes(*features: dict[str, Any], owner: str | None = None) -> list[Volume]:
    return parse_geojson(collection(*features), owner=owner)


def one(f: dict[str, Any], owner: str = OWN) -> Volume:
    return parse_geojson(collection(f), owner=owner)[0]


def oracle(queries: list[Volume], active: list[Volume]) -> set[tuple[str, str]]:
    """Every pair tested with shapely's exact predicate and the stated band and window rules."""
    out = set()
    for q in queries:
        for a in active:
            if q.key == a.key:
                continue
            if not (q.time_start_us < a.time_end_us and a.time_start_us < q.time_end_us):
                continue
            if not (q.altitude_lower <= a.altitude_upper and a.altitude_lower <= q.altitude_upper):
                continue
            if shapely.intersects(q.footprint, a.footprint):
                out.add((q.id, a.id))
    return out
