"""Fuzz target: deconfliction input, GeoJSON and ASTM F3548 Volume4D (parse_geojson,
parse_volume4d), as received in a peer's notification body or read from a planner's file.

The bytes go through the same strict JSON parser as a message body, then both volume parsers.
Seeds: a polygon, a circle, a corridor and a multipolygon in each form. Contract: only typed
errors; what parses writes back (to_geojson, to_volume4d) to input that parses to the same ids,
bands and windows.

    .venv/bin/python fuzz/fuzz_volumes.py -runs=1000000
"""

from __future__ import annotations

import sys
from typing import Any

import atheris

with atheris.instrument_imports(include=["hotline"]):
    from _common import run

    from hotline.core.encoding import decode_json, encode_json
    from hotline.deconfliction import parse_geojson, parse_volume4d, to_geojson, to_volume4d
    from hotline.errors import HotlineError


def _feature(fid: str, geometry: dict[str, Any], **extra: float) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": fid,
        "geometry": geometry,
        "properties": {
            "altitude_lower": 100,
            "altitude_upper": 9000.5,
            "time_start": "2026-03-01T10:00:00Z",
            "time_end": "2026-03-01T13:30:00+02:00",
            **extra,
        },
    }


RING = [[35, 33], [35.5, 33], [35.5, 33.5], [35, 33.5], [35, 33]]
COLLECTION = {
    "type": "FeatureCollection",
    "features": [
        _feature("poly", {"type": "Polygon", "coordinates": [RING]}),
        _feature("circle", {"type": "Point", "coordinates": [36, 34]}, radius_m=5000),
        _feature(
            "corridor",
            {"type": "LineString", "coordinates": [[36, 34], [36.5, 34.2]]},
            half_width_m=1000,
        ),
        _feature(
            "multi",
            {
                "type": "MultiPolygon",
                "coordinates": [[RING], [[[37, 33], [37.1, 33], [37.1, 33.1], [37, 33]]]],
            },
        ),
    ],
}
VOLUMES = parse_geojson(COLLECTION)
SEEDS = [encode_json(COLLECTION), encode_json({"volumes": to_volume4d(VOLUMES)})]


def _summary(volumes: list[Any]) -> list[tuple[Any, ...]]:
    return [
        (v.id, v.altitude_lower, v.altitude_upper, v.time_start_us, v.time_end_us) for v in volumes
    ]


def test_one_input(data: bytes) -> None:
    try:
        value = decode_json(data, Any, what="volumes")
    except HotlineError:
        return
    try:
        volumes = parse_geojson(value, owner="moscow")
    except HotlineError:
        pass
    else:
        again = parse_geojson(decode_json(encode_json(to_geojson(volumes)), Any, what="again"))
        if _summary(again) != _summary(volumes):
            raise AssertionError("GeoJSON volumes do not survive writing and reading back")
    try:
        volumes = parse_volume4d(value, owner="moscow")
    except HotlineError:
        return
    back = parse_volume4d(decode_json(encode_json(to_volume4d(volumes)), Any, what="again"))
    if _summary(back) != _summary(volumes):
        raise AssertionError("Volume4D volumes do not survive writing and reading back")


if __name__ == "__main__":
    run("volumes", test_one_input, SEEDS)
    sys.exit(0)
