"""Strict parsing: every invalid input refused with an InputError naming the feature and field."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from deconfliction_helpers import collection, feature, rect

from hotline.deconfliction import (
    MAX_VERTICES,
    ShapeKind,
    parse_geojson,
    parse_volume4d,
    to_geojson,
    to_volume4d,
)
from hotline.errors import InputError


def refused(obj: Any, field: str, feature_id: str = "f", **kw: Any) -> InputError:
    with pytest.raises(InputError) as e:
        parse_geojson(obj, **kw)
    assert e.value.fields.get("feature") == feature_id, e.value.fields
    assert e.value.fields.get("field") == field, e.value.fields
    assert feature_id in e.value.detail
    return e.value


def test_a_polygon_circle_and_corridor_parse() -> None:
    vols = parse_geojson(
        collection(
            feature("p", rect(35, 33, 35.5, 33.5), lo=100, hi=200),
            feature("c", {"type": "Point", "coordinates": [36, 34]}, radius_m=5000),
            feature(
                "k",
                {"type": "LineString", "coordinates": [[36, 34], [36.5, 34.2]]},
                half_width_m=1000,
            ),
        )
    )
    assert [v.shape.kind for v in vols] == [ShapeKind.POLYGON, ShapeKind.CIRCLE, ShapeKind.CORRIDOR]
    assert [v.owner for v in vols] == ["own"] * 3
    assert vols[0].altitude_lower == 100 and vols[0].max_error_m == 0
    assert 0 < vols[1].max_error_m < 5000 * 0.01


def test_integer_ids_and_single_feature() -> None:
    f = feature("x", rect(35, 33, 36, 34))
    f["id"] = 7
    [v] = parse_geojson(f)
    assert v.id == "7"


def test_geojson_round_trip() -> None:
    src = collection(
        feature("p", rect(35, 33, 35.5, 33.5), lo=100, hi=200),
        feature("c", {"type": "Point", "coordinates": [36, 34]}, radius_m=5000),
    )
    vols = parse_geojson(src, owner="Moscow")
    again = parse_geojson(json.loads(json.dumps(to_geojson(vols))))
    assert [(v.id, v.owner, v.version, v.time_start_us, v.time_end_us) for v in again] == [
        (v.id, v.owner, v.version, v.time_start_us, v.time_end_us) for v in vols
    ]
    assert all(a.footprint.equals(b.footprint) for a, b in zip(vols, again, strict=True))


def test_self_intersecting_ring_is_refused_not_fixed() -> None:
    bowtie = {
        "type": "Polygon",
        "coordinates": [[[35, 33], [36, 34], [36, 33], [35, 34], [35, 33]]],
    }
    e = refused(collection(feature("f", bowtie)), "geometry.coordinates")
    assert "Self-intersection" in e.detail


@pytest.mark.parametrize(
    ("coords", "needle"),
    [
        ([], "non-empty"),
        ([[]], "non-empty"),
        ([[[35, 33], [36, 33], [35, 33]]], "at least 4"),
        ([[[35, 33], [36, 33], [36, 34], [35, 34]]], "closed"),
        ([[[35, 33], [math.nan, 33], [36, 34], [35, 33]]], "finite"),
        ([[[35, 33], ["36", 33], [36, 34], [35, 33]]], "numbers"),
        ([[[35, 33], [36, 33], [36, 33], [35, 33]]], "invalid footprint"),
    ],
)
def test_bad_coordinates_are_refused(coords: Any, needle: str) -> None:
    e = refused(
        collection(feature("f", {"type": "Polygon", "coordinates": coords})), "geometry.coordinates"
    )
    assert needle in e.detail


def test_too_many_vertices() -> None:
    n = MAX_VERTICES
    ring = [
        [35 + math.cos(2 * math.pi * i / n) * 0.1, 33 + math.sin(2 * math.pi * i / n) * 0.1]
        for i in range(n)
    ]
    ring.append(ring[0])
    e = refused(
        collection(feature("f", {"type": "Polygon", "coordinates": [ring]})), "geometry.coordinates"
    )
    assert "limit" in e.detail


def test_lower_above_upper_and_times() -> None:
    refused(collection(feature("f", rect(35, 33, 36, 34), lo=500, hi=400)), "altitude_lower")
    refused(collection(feature("f", rect(35, 33, 36, 34), t0=2, t1=1)), "time_end")
    refused(collection(feature("f", rect(35, 33, 36, 34), t0=1, t1=1)), "time_end")
    f = feature("f", rect(35, 33, 36, 34))
    f["properties"]["time_start"] = "2026-03-01T10:00:00"  # no offset
    refused(collection(f), "time_start")
    f["properties"]["time_start"] = "yesterday"
    refused(collection(f), "time_start")
    f["properties"]["time_start"] = "2300-01-01T00:00:00Z"
    assert "2255" in refused(collection(f), "time_start").detail


def test_unknown_and_missing_properties() -> None:
    refused(collection(feature("f", rect(35, 33, 36, 34), colour="red")), "colour")
    f = feature("f", rect(35, 33, 36, 34))
    del f["properties"]["altitude_upper"]
    refused(collection(f), "altitude_upper")
    refused(collection(feature("f", rect(35, 33, 36, 34), radius_m=5)), "radius_m")
    refused(collection(feature("f", {"type": "Point", "coordinates": [35, 33]})), "radius_m")
    refused(
        collection(feature("f", {"type": "Point", "coordinates": [35, 33]}, radius_m=-1)),
        "radius_m",
    )
    refused(
        collection(
            feature(
                "f", {"type": "LineString", "coordinates": [[35, 33], [36, 33]]}, half_width_m=0
            )
        ),
        "half_width_m",
    )
    refused(
        collection(
            feature(
                "f", {"type": "LineString", "coordinates": [[35, 33], [35, 33]]}, half_width_m=5
            )
        ),
        "geometry.coordinates",
    )


def test_missing_and_duplicate_ids() -> None:
    f = feature("f", rect(35, 33, 36, 34))
    del f["id"]
    refused(collection(f), "id", feature_id="#0")
    refused(
        collection(feature("f", rect(35, 33, 36, 34)), feature("f", rect(35, 33, 36, 34))), "id"
    )


def test_owner_property_must_match_the_sender() -> None:
    f = feature("f", rect(35, 33, 36, 34), owner="own")
    refused(collection(f), "owner", owner="Moscow")


def test_antimeridian_and_poles_are_refused() -> None:
    crossing = {
        "type": "Polygon",
        "coordinates": [[[179, 10], [-179, 10], [-179, 11], [179, 11], [179, 10]]],
    }
    assert (
        "antimeridian" in refused(collection(feature("f", crossing)), "geometry.coordinates").detail
    )
    at_180 = rect(179, 10, 180, 11)
    assert (
        "antimeridian" in refused(collection(feature("f", at_180)), "geometry.coordinates").detail
    )
    pole = rect(-10, 85, 10, 90)
    assert "pole" in refused(collection(feature("f", pole)), "geometry.coordinates").detail
    circle = feature("f", {"type": "Point", "coordinates": [179.99, 0]}, radius_m=5000)
    assert "antimeridian" in refused(collection(circle), "radius_m").detail
    polar = feature("f", {"type": "Point", "coordinates": [0, 88.5]}, radius_m=100_000)
    assert "pole" in refused(collection(polar), "radius_m").detail


def test_not_a_feature_collection() -> None:
    with pytest.raises(InputError):
        parse_geojson([])
    with pytest.raises(InputError):
        parse_geojson({"type": "GeometryCollection"})
    with pytest.raises(InputError):
        parse_geojson({"type": "FeatureCollection", "features": [], "extra": 1})


# ---- ASTM F3548 Volume4D ----------------------------------------------------------------------

V4D: dict[str, Any] = {
    "id": "op-1",
    "volume": {
        "outline_polygon": {
            "vertices": [
                {"lat": 33.0, "lng": 35.0},
                {"lat": 33.0, "lng": 35.5},
                {"lat": 33.5, "lng": 35.5},
                {"lat": 33.5, "lng": 35.0},
            ]
        },
        "altitude_lower": {"value": 100, "reference": "W84", "units": "M"},
        "altitude_upper": {"value": 900, "reference": "W84", "units": "M"},
    },
    "time_start": {"value": "2026-03-01T10:00:00Z", "format": "RFC3339"},
    "time_end": {"value": "2026-03-01T11:00:00Z", "format": "RFC3339"},
}


def test_volume4d_polygon_and_circle() -> None:
    circle = json.loads(json.dumps(V4D))
    circle["id"] = "op-2"
    del circle["volume"]["outline_polygon"]
    circle["volume"]["outline_circle"] = {
        "center": {"lat": 33.2, "lng": 35.2},
        "radius": {"value": 2000, "units": "M"},
    }
    vols = parse_volume4d({"volumes": [V4D, circle]}, owner="Moscow")
    assert [v.id for v in vols] == ["op-1", "op-2"]
    assert vols[0].footprint.area == pytest.approx(0.25)
    assert vols[1].shape.kind == ShapeKind.CIRCLE and vols[1].owner == "Moscow"
    back = parse_volume4d(to_volume4d(vols))
    assert [v.id for v in back] == ["op-1", "op-2"]
    assert back[0].footprint.equals(vols[0].footprint)
    assert back[1].shape.radius_m == 2000


def test_volume4d_refusals() -> None:
    bad = json.loads(json.dumps(V4D))
    bad["volume"]["altitude_lower"]["reference"] = "SFC"
    with pytest.raises(InputError) as e:
        parse_volume4d(bad)
    assert e.value.fields == {"feature": "op-1", "field": "volume.altitude_lower.reference"}
    bad = json.loads(json.dumps(V4D))
    bad["volume"]["altitude_lower"]["value"] = 1000
    with pytest.raises(InputError) as e:
        parse_volume4d(bad)
    assert e.value.fields["field"] == "altitude_lower"
    bad = json.loads(json.dumps(V4D))
    bad["extra"] = True
    with pytest.raises(InputError):
        parse_volume4d(bad)
    bad = json.loads(json.dumps(V4D))
    del bad["volume"]["altitude_upper"]
    with pytest.raises(InputError):
        parse_volume4d(bad)


def test_corridor_and_multipolygon_export_to_volume4d() -> None:
    multi = {
        "type": "MultiPolygon",
        "coordinates": [
            rect(35, 33, 35.1, 33.1)["coordinates"],
            rect(36, 33, 36.1, 33.1)["coordinates"],
        ],
    }
    vols = parse_geojson(
        collection(
            feature("m", multi),
            feature(
                "k",
                {"type": "LineString", "coordinates": [[36, 34], [36.5, 34.2]]},
                half_width_m=1000,
            ),
        )
    )
    out = to_volume4d(vols)
    assert [o["id"] for o in out] == ["m#1", "m#2", "k"]
    assert all("outline_polygon" in o["volume"] for o in out)
    back = parse_volume4d(out)
    assert back[2].footprint.equals_exact(vols[1].footprint, 1e-9)
