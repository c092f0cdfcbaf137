"""Property tests of the volume parsers (GeoJSON, ASTM F3548 Volume4D): generated valid volumes
read back to themselves in both forms; arbitrary JSON, and valid input with any one member
replaced, is refused with an InputError and nothing else (a peer's notification body reaches
these parsers)."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from deconfliction_helpers import collection, feature, rect
from hypothesis import given, settings
from hypothesis import strategies as st

from hotline.deconfliction import parse_geojson, parse_volume4d, to_geojson, to_volume4d
from hotline.errors import InputError

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
LON = st.floats(-170, 170)
LAT = st.floats(-80, 80)
SPAN = st.floats(0.001, 5)


@st.composite
def valid_features(draw: st.DrawFn, fid: str) -> dict[str, Any]:
    lo = draw(st.floats(-400, 20_000))
    hi = lo + draw(st.floats(0, 20_000))
    t0 = draw(st.floats(0, 10_000))
    t1 = t0 + draw(st.floats(0.01, 100))
    x, y = draw(LON), draw(LAT)
    shape = draw(st.sampled_from(["polygon", "circle", "corridor"]))
    if shape == "polygon":
        return feature(fid, rect(x, y, x + draw(SPAN), y + draw(SPAN)), lo=lo, hi=hi, t0=t0, t1=t1)
    if shape == "circle":
        point = {"type": "Point", "coordinates": [x, y]}
        radius = draw(st.floats(10, 200_000))
        return feature(fid, point, lo=lo, hi=hi, t0=t0, t1=t1, radius_m=radius)
    line = {"type": "LineString", "coordinates": [[x, y], [x + draw(SPAN), y + draw(SPAN)]]}
    width = draw(st.floats(10, 50_000))
    return feature(fid, line, lo=lo, hi=hi, t0=t0, t1=t1, half_width_m=width)


COLLECTIONS = (
    st.integers(1, 4)
    .flatmap(lambda n: st.tuples(*(valid_features(f"f{i}") for i in range(n))))
    .map(lambda fs: collection(*fs))
)


def _summary(volumes: list[Any]) -> list[tuple[Any, ...]]:
    return [
        (v.id, v.shape.kind, v.altitude_lower, v.altitude_upper, v.time_start_us, v.time_end_us)
        for v in volumes
    ]


@settings(max_examples=60, deadline=None)
@given(COLLECTIONS)
def test_generated_volumes_read_back_in_both_forms(src):
    volumes = parse_geojson(src, owner="moscow")
    again = parse_geojson(json.loads(json.dumps(to_geojson(volumes))))
    assert _summary(again) == _summary(volumes)
    assert all(a.footprint.equals(b.footprint) for a, b in zip(again, volumes, strict=True))
    back = parse_volume4d(json.loads(json.dumps(to_volume4d(volumes))))
    # Volume4D has no corridor: it comes back as its footprint polygon, same band and window.
    assert [(v.id, v.altitude_lower, v.time_start_us) for v in back] == [
        (v.id, v.altitude_lower, v.time_start_us) for v in volumes
    ]


def _replace(value: Any, path: list[Any], new: Any) -> Any:
    if not path:
        return new
    head, *rest = path
    if isinstance(value, dict):
        return {**value, head: _replace(value.get(head), rest, new)}
    copy = list(value)
    copy[head] = _replace(copy[head], rest, new)
    return copy


def _paths(value: Any, prefix: list[Any]) -> list[list[Any]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, [*prefix, k])
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, [*prefix, i])
    return out


@st.composite
def damaged(draw: st.DrawFn) -> Any:
    """A valid collection (or its Volume4D form) with one member anywhere replaced by any JSON."""
    src = draw(COLLECTIONS)
    if draw(st.booleans()):
        src = {"volumes": to_volume4d(parse_geojson(src))}
    path = draw(st.sampled_from(_paths(src, [])))
    return _replace(src, path, draw(JSON))


@settings(max_examples=150, deadline=None)
@given(st.one_of(JSON, damaged()))
def test_anything_else_is_an_input_error(value):
    # Any other exception, even another HotlineError class, escapes and fails the test.
    for parse in (parse_geojson, parse_volume4d):
        for owner in ("moscow", None):
            with contextlib.suppress(InputError):
                parse(value, owner=owner)
