"""Strict parsers and writers for volumes: GeoJSON FeatureCollections and ASTM F3548 Volume4D.

Everything from a file or a peer goes through here before anything else touches it (DESIGN
decision 9). Nothing is repaired: a bad feature is refused with an ``InputError`` whose ``fields``
name the feature (its id, or its index when it has none) and the field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import shapely
from shapely.geometry import mapping

from hotline.deconfliction._geo import (
    MAX_VERTICES,
    circle_footprint,
    corridor_footprint,
    polygon_footprint,
)
from hotline.deconfliction._volume import (
    MAX_ID_LENGTH,
    MAX_OWNER_LENGTH,
    OWN,
    POLYGON_SHAPE,
    Shape,
    ShapeKind,
    Volume,
    format_time,
    to_us,
)
from hotline.errors import InputError

#: Most features in one collection (a planner's file or a notification); bounds memory and time.
MAX_FEATURES = 2_000_000
#: Altitudes beyond this many metres (either sign) are refused as nonsense.
MAX_ABS_ALTITUDE_M = 1_000_000.0

#: Times from 1970 up to 2^53 microseconds (2255): exact as float64 in the index's boxes.
MAX_TIME_US = 2**53

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})$")
_FEATURE_KEYS = frozenset({"type", "id", "geometry", "properties", "bbox"})
_COLLECTION_KEYS = frozenset({"type", "features", "bbox"})
_REQUIRED_PROPS = ("altitude_lower", "altitude_upper", "time_start", "time_end")
_OPTIONAL_PROPS = frozenset({"radius_m", "half_width_m", "owner", "version"})
_GEOMETRY_KEYS = frozenset({"type", "coordinates", "bbox"})


def _bad(feature: str, field: str, detail: str) -> InputError:
    return InputError(f"feature {feature!r}: {detail}", fields={"feature": feature, "field": field})


def parse_time(value: object, feature: str, field: str) -> int:
    """RFC 3339 date-time with an offset (``Z`` or ``+hh:mm``) to microseconds since the epoch."""
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise _bad(
            feature,
            field,
            f"{field} must be an RFC 3339 date-time with an offset, e.g. 2026-01-31T10:00:00Z, "
            f"got {value!r}",
        )
    try:
        t = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError as e:
        raise _bad(feature, field, f"{field} is not a valid date-time: {e}") from e
    us = to_us(t)
    if not 0 <= us < MAX_TIME_US:
        raise _bad(feature, field, f"{field} must be between 1970 and 2255 (UTC), got {value!r}")
    return us


def _altitude(value: object, feature: str, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(feature, field, f"{field} must be a number of metres, got {value!r}")
    x = float(value)
    if not math.isfinite(x) or abs(x) > MAX_ABS_ALTITUDE_M:
        raise _bad(feature, field, f"{field} must be finite and within ±{MAX_ABS_ALTITUDE_M:g} m")
    return x


def _check_4d(
    feature: str, lower: float, upper: float, start: int, end: int, prefix: str = ""
) -> None:
    if lower > upper:
        raise _bad(
            feature,
            f"{prefix}altitude_lower",
            f"altitude_lower {lower:g} m is above altitude_upper {upper:g} m",
        )
    if end < start:
        raise _bad(feature, f"{prefix}time_end", "time_end is before time_start")
    if end == start:
        raise _bad(feature, f"{prefix}time_end", "time_end equals time_start: the window is empty")


def _owner(props_owner: object, given: str | None, feature: str) -> str:
    if props_owner is None:
        return given or OWN
    if not isinstance(props_owner, str) or not 0 < len(props_owner) <= MAX_OWNER_LENGTH:
        raise _bad(feature, "owner", "owner must be a name of 1 to 64 characters")
    if given is not None and props_owner != given:
        raise _bad(
            feature, "owner", f"owner {props_owner!r} differs from the sender {given!r}: refused"
        )
    return props_owner


def _feature_id(raw: object, index: int) -> str:
    where = f"#{index}"
    if raw is None:
        raise _bad(where, "id", "every feature needs an id (the volume's id)")
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise _bad(where, "id", f"a feature id is a string or an integer, got {raw!r}")
    fid = str(raw)
    if not 0 < len(fid) <= MAX_ID_LENGTH or not fid.isprintable():
        raise _bad(where, "id", f"an id is 1 to {MAX_ID_LENGTH} printable characters")
    return fid


def parse_geojson(obj: object, *, owner: str | None = None) -> list[Volume]:
    """Volumes from a GeoJSON FeatureCollection (or one Feature).

    Properties: ``altitude_lower``, ``altitude_upper`` (metres), ``time_start``, ``time_end``
    (RFC 3339); ``radius_m`` for a Point (a circle), ``half_width_m`` for a LineString (a
    corridor); optionally ``owner`` and ``version`` (as written by ``to_geojson``). ``owner``
    given here (a peer's name) is the owner of every volume; a differing property is refused.
    """
    if not isinstance(obj, Mapping):
        raise InputError("GeoJSON must be an object", fields={"field": "type"})
    if obj.get("type") == "Feature":
        obj = {"type": "FeatureCollection", "features": [obj]}
    if obj.get("type") != "FeatureCollection":
        raise InputError(
            f"expected a GeoJSON FeatureCollection, got type {obj.get('type')!r}",
            fields={"field": "type"},
        )
    unknown = set(obj) - _COLLECTION_KEYS
    if unknown:
        raise InputError(
            f"unknown members of the FeatureCollection: {sorted(unknown)}",
            fields={"field": sorted(unknown)[0]},
        )
    features = obj.get("features")
    if not isinstance(features, list):
        raise InputError("features must be a list", fields={"field": "features"})
    if len(features) > MAX_FEATURES:
        raise InputError(
            f"{len(features)} features, more than the limit of {MAX_FEATURES}",
            fields={"field": "features"},
        )
    out: list[Volume] = []
    seen: set[str] = set()
    for i, f in enumerate(features):
        v = _parse_feature(f, i, owner)
        if v.id in seen:
            raise _bad(v.id, "id", "duplicate id in this collection")
        seen.add(v.id)
        out.append(v)
    return out


def _parse_feature(f: object, index: int, owner: str | None) -> Volume:
    if not isinstance(f, Mapping) or f.get("type") != "Feature":
        raise _bad(f"#{index}", "type", "not a GeoJSON Feature")
    fid = _feature_id(f.get("id"), index)
    unknown = set(f) - _FEATURE_KEYS
    if unknown:
        raise _bad(fid, sorted(unknown)[0], f"unknown members of the Feature: {sorted(unknown)}")
    props = f.get("properties")
    if not isinstance(props, Mapping):
        raise _bad(fid, "properties", "properties must be an object")
    unknown = set(props) - set(_REQUIRED_PROPS) - _OPTIONAL_PROPS
    if unknown:
        raise _bad(fid, sorted(unknown)[0], f"unknown properties: {sorted(unknown)}")
    for name in _REQUIRED_PROPS:
        if name not in props:
            raise _bad(fid, name, f"missing property {name}")
    lower = _altitude(props["altitude_lower"], fid, "altitude_lower")
    upper = _altitude(props["altitude_upper"], fid, "altitude_upper")
    start = parse_time(props["time_start"], fid, "time_start")
    end = parse_time(props["time_end"], fid, "time_end")
    _check_4d(fid, lower, upper, start, end)
    version = props.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _bad(fid, "version", f"version must be a positive integer, got {version!r}")
    who = _owner(props.get("owner"), owner, fid)

    geometry = f.get("geometry")
    if not isinstance(geometry, Mapping):
        raise _bad(fid, "geometry", "a volume needs a geometry")
    unknown = set(geometry) - _GEOMETRY_KEYS
    if unknown:
        raise _bad(fid, "geometry", f"unknown members of the geometry: {sorted(unknown)}")
    gtype = geometry.get("type")
    coords = geometry.get("coordinates")
    err = 0.0
    if gtype in ("Polygon", "MultiPolygon"):
        for extra in ("radius_m", "half_width_m"):
            if extra in props:
                raise _bad(fid, extra, f"{extra} is only for a Point or a LineString")
        footprint = polygon_footprint(dict(geometry), fid)
        shape = POLYGON_SHAPE
    elif gtype == "Point":
        if "half_width_m" in props:
            raise _bad(fid, "half_width_m", "half_width_m is for a LineString (a corridor)")
        if "radius_m" not in props:
            raise _bad(fid, "radius_m", "a Point needs radius_m (a circle)")
        centre, r, footprint, err = circle_footprint(coords, props["radius_m"], fid)
        shape = Shape.circle(centre, r)
    elif gtype == "LineString":
        if "radius_m" in props:
            raise _bad(fid, "radius_m", "radius_m is for a Point (a circle)")
        if "half_width_m" not in props:
            raise _bad(fid, "half_width_m", "a LineString needs half_width_m (a corridor)")
        line, w, footprint, err = corridor_footprint(coords, props["half_width_m"], fid)
        shape = Shape.corridor(line, w)
    else:
        raise _bad(
            fid,
            "geometry.type",
            f"geometry must be Polygon, MultiPolygon, Point or LineString, got {gtype!r}",
        )
    return Volume(
        id=fid,
        footprint=footprint,
        altitude_lower=lower,
        altitude_upper=upper,
        time_start_us=start,
        time_end_us=end,
        shape=shape,
        owner=who,
        version=version,
        max_error_m=err,
    )


def to_geojson(volumes: list[Volume]) -> dict[str, Any]:
    """A FeatureCollection that ``parse_geojson`` reads back to the same volumes."""
    features = []
    for v in volumes:
        props: dict[str, Any] = {
            "altitude_lower": v.altitude_lower,
            "altitude_upper": v.altitude_upper,
            "time_start": format_time(v.time_start_us),
            "time_end": format_time(v.time_end_us),
            "owner": v.owner,
            "version": v.version,
        }
        if v.shape.radius_m is not None:
            props["radius_m"] = v.shape.radius_m
        if v.shape.half_width_m is not None:
            props["half_width_m"] = v.shape.half_width_m
        features.append(
            {"type": "Feature", "id": v.id, "geometry": v.geometry, "properties": props}
        )
    return {"type": "FeatureCollection", "features": features}


# ---- ASTM F3548-21 Volume4D --------------------------------------------------------------------

_V4D_KEYS = frozenset({"volume", "time_start", "time_end", "id"})
_V3D_KEYS = frozenset({"outline_polygon", "outline_circle", "altitude_lower", "altitude_upper"})


def _keys(obj: object, allowed: frozenset[str], fid: str, field: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise _bad(fid, field, f"{field} must be an object")
    unknown = set(obj) - allowed
    if unknown:
        raise _bad(fid, f"{field}.{sorted(unknown)[0]}", f"unknown members: {sorted(unknown)}")
    return obj


def _v4d_time(obj: object, fid: str, field: str) -> int:
    t = _keys(obj, frozenset({"value", "format"}), fid, field)
    if t.get("format", "RFC3339") != "RFC3339":
        raise _bad(fid, f"{field}.format", "time format must be RFC3339")
    return parse_time(t.get("value"), fid, f"{field}.value")


def _v4d_altitude(obj: object, fid: str, field: str) -> float:
    a = _keys(obj, frozenset({"value", "reference", "units"}), fid, field)
    if a.get("reference") != "W84":
        raise _bad(fid, f"{field}.reference", "altitude reference must be W84")
    if a.get("units") != "M":
        raise _bad(fid, f"{field}.units", "altitude units must be M")
    return _altitude(a.get("value"), fid, f"{field}.value")


def _latlng(obj: object, fid: str, field: str) -> list[object]:
    p = _keys(obj, frozenset({"lat", "lng"}), fid, field)
    if "lat" not in p or "lng" not in p:
        raise _bad(fid, field, "a point needs lat and lng")
    return [p["lng"], p["lat"]]


def parse_volume4d(obj: object, *, owner: str | None = None) -> list[Volume]:
    """Volumes from ASTM F3548-21 ``Volume4D`` objects: one, a list, or ``{"volumes": [...]}``.

    hotline reads one extension member, ``id`` (the volume's id; ``v<index>`` when absent).
    Altitudes must be ``W84`` in ``M``; both bounds and both times are required.
    """
    if isinstance(obj, Mapping) and "volumes" in obj:
        unknown = set(obj) - {"volumes"}
        if unknown:
            raise InputError(f"unknown members: {sorted(unknown)}", fields={"field": "volumes"})
        obj = obj["volumes"]
    items = obj if isinstance(obj, list) else [obj]
    if len(items) > MAX_FEATURES:
        raise InputError(f"more than {MAX_FEATURES} volumes", fields={"field": "volumes"})
    out: list[Volume] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        v = _parse_one_volume4d(item, i, owner)
        if v.id in seen:
            raise _bad(v.id, "id", "duplicate id in this list")
        seen.add(v.id)
        out.append(v)
    return out


def _parse_one_volume4d(item: object, index: int, owner: str | None) -> Volume:
    raw_id = item.get("id", f"v{index}") if isinstance(item, Mapping) else None
    fid = _feature_id(raw_id, index)
    v4 = _keys(item, _V4D_KEYS, fid, "volume4d")
    for name in ("volume", "time_start", "time_end"):
        if name not in v4:
            raise _bad(fid, name, f"missing {name}")
    v3 = _keys(v4["volume"], _V3D_KEYS, fid, "volume")
    for name in ("altitude_lower", "altitude_upper"):
        if name not in v3:
            raise _bad(fid, f"volume.{name}", f"missing volume.{name} (hotline needs a band)")
    lower = _v4d_altitude(v3["altitude_lower"], fid, "volume.altitude_lower")
    upper = _v4d_altitude(v3["altitude_upper"], fid, "volume.altitude_upper")
    start = _v4d_time(v4["time_start"], fid, "time_start")
    end = _v4d_time(v4["time_end"], fid, "time_end")
    _check_4d(fid, lower, upper, start, end, prefix="")
    has_poly = "outline_polygon" in v3
    has_circle = "outline_circle" in v3
    if has_poly == has_circle:
        raise _bad(fid, "volume", "exactly one of outline_polygon and outline_circle is needed")
    err = 0.0
    if has_circle:
        c = _keys(v3["outline_circle"], frozenset({"center", "radius"}), fid, "outline_circle")
        centre = _latlng(c.get("center"), fid, "outline_circle.center")
        radius = _keys(c.get("radius"), frozenset({"value", "units"}), fid, "outline_circle.radius")
        if radius.get("units") != "M":
            raise _bad(fid, "outline_circle.radius.units", "radius units must be M")
        ctr, r, footprint, err = circle_footprint(centre, radius.get("value"), fid)
        shape = Shape.circle(ctr, r)
    else:
        p = _keys(v3["outline_polygon"], frozenset({"vertices"}), fid, "outline_polygon")
        vertices = p.get("vertices")
        if not isinstance(vertices, list) or len(vertices) < 3:
            raise _bad(fid, "outline_polygon.vertices", "a polygon needs at least 3 vertices")
        if len(vertices) > MAX_VERTICES:
            raise _bad(fid, "outline_polygon.vertices", f"more than {MAX_VERTICES} vertices")
        ring = [_latlng(x, fid, "outline_polygon.vertices") for x in vertices]
        if ring[0] != ring[-1]:
            ring.append(ring[0])
        geometry = {"type": "Polygon", "coordinates": [ring]}
        footprint = polygon_footprint(geometry, fid)
        shape = POLYGON_SHAPE
    return Volume(
        id=fid,
        footprint=footprint,
        altitude_lower=lower,
        altitude_upper=upper,
        time_start_us=start,
        time_end_us=end,
        shape=shape,
        owner=owner or OWN,
        max_error_m=err,
    )


def _v4d(
    vid: str, vertices: list[dict[str, float]] | None, v: Volume, circle: bool
) -> dict[str, Any]:
    volume: dict[str, Any] = {}
    if circle:
        lon, lat = v.shape.points[0]
        volume["outline_circle"] = {
            "center": {"lat": lat, "lng": lon},
            "radius": {"value": v.shape.radius_m, "units": "M"},
        }
    else:
        volume["outline_polygon"] = {"vertices": vertices}
    volume["altitude_lower"] = {"value": v.altitude_lower, "reference": "W84", "units": "M"}
    volume["altitude_upper"] = {"value": v.altitude_upper, "reference": "W84", "units": "M"}
    return {
        "id": vid,
        "volume": volume,
        "time_start": {"value": format_time(v.time_start_us), "format": "RFC3339"},
        "time_end": {"value": format_time(v.time_end_us), "format": "RFC3339"},
    }


def to_volume4d(volumes: list[Volume]) -> list[dict[str, Any]]:
    """ASTM F3548 Volume4D objects (with hotline's ``id`` member).

    A circle stays a circle. Volume4D has no corridor, hole or multipolygon: a corridor is written
    as its footprint polygon, a polygon with holes as its outer ring (a superset: safe), and a
    MultiPolygon as one Volume4D per part with ids ``<id>#1``, ``<id>#2`` ...
    """
    out: list[dict[str, Any]] = []
    for v in volumes:
        if v.shape.kind == ShapeKind.CIRCLE:
            out.append(_v4d(v.id, None, v, circle=True))
            continue
        parts = list(shapely.get_parts(v.footprint))
        for n, part in enumerate(parts, start=1):
            ring = mapping(part)["coordinates"][0][:-1]
            vertices = [{"lat": float(y), "lng": float(x)} for x, y, *_ in ring]
            vid = v.id if len(parts) == 1 else f"{v.id}#{n}"
            out.append(_v4d(vid, vertices, v, circle=False))
    return out
