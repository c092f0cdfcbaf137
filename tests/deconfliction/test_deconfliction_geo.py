"""Circles and corridors as polygons: they contain the true shape, with the stated error.

The truth is measured on the WGS84 ellipsoid with pyproj's Geod, independently of how the
polygons are built (a geodesic fan for circles, a local plane for corridors).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import shapely
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pyproj import Geod

from hotline.deconfliction._geo import (
    areas_m2,
    circle_footprint,
    corridor_footprint,
    geodesic_area_m2,
)
from hotline.errors import InputError

GEOD = Geod(ellps="WGS84")
AZ = np.linspace(0, 360, 97)


def inside_all(poly: object, lon: np.ndarray, lat: np.ndarray) -> bool:
    return bool(shapely.contains_xy(poly, lon, lat).all())


@settings(max_examples=150, deadline=None)
@given(
    lon=st.floats(-170, 170),
    lat=st.floats(-80, 80),
    radius=st.floats(1.0, 500_000.0),
)
def test_circle_contains_the_geodesic_circle_within_its_stated_error(
    lon: float, lat: float, radius: float
) -> None:
    try:
        _, r, poly, err = circle_footprint([lon, lat], radius, "c")
    except InputError:
        assume(False)
        return
    # Stated: 0.58% of the radius (chord of 32 segments and a margin for straight edges), more
    # for large circles at high latitudes, where straight lon/lat edges bend in.
    assert 0 < err <= (0.006 if abs(lat) < 60 or r < 50_000 else 0.02) * r
    # Every point of the true circle is inside.
    n = len(AZ)
    clon, clat, _ = GEOD.fwd(np.full(n, lon), np.full(n, lat), AZ, np.full(n, r * (1 - 1e-9)))
    assert inside_all(poly, np.asarray(clon), np.asarray(clat))
    # ... including between vertices: edge midpoints lie outside the circle.
    ring = np.asarray(poly.exterior.coords)
    mid = (ring[:-1] + ring[1:]) / 2
    _, _, d_mid = GEOD.inv(np.full(len(mid), lon), np.full(len(mid), lat), mid[:, 0], mid[:, 1])
    assert (np.asarray(d_mid) >= r).all()
    # No vertex farther than the stated error.
    _, _, d = GEOD.inv(np.full(len(ring), lon), np.full(len(ring), lat), ring[:, 0], ring[:, 1])
    assert (np.asarray(d) <= r + err + 1e-6 * r).all()


@st.composite
def corridors(draw: st.DrawFn) -> tuple[list[list[float]], float]:
    lon = draw(st.floats(-170, 170))
    lat = draw(st.floats(-70, 70))
    n = draw(st.integers(2, 4))
    pts = [[lon, lat]]
    for _ in range(n - 1):
        pts.append(
            [pts[-1][0] + draw(st.floats(-0.4, 0.4)), pts[-1][1] + draw(st.floats(-0.4, 0.4))]
        )
    return pts, draw(st.floats(1.0, 20_000.0))


@settings(max_examples=80, deadline=None)
@given(corridors())
def test_corridor_contains_every_point_within_half_width(
    case: tuple[list[list[float]], float],
) -> None:
    line, width = case
    try:
        _, w, poly, err = corridor_footprint(line, width, "k")
    except InputError:
        assume(False)
        return
    pts = np.asarray(line)
    # Dense samples of the centre line (straight in lon/lat, as GeoJSON says).
    t = np.linspace(0, 1, 60)[:, None]
    samples = np.concatenate([a + t * (b - a) for a, b in itertools.pairwise(pts)])
    k = len(AZ)
    for s_lon, s_lat in samples[::3]:
        plon, plat, _ = GEOD.fwd(
            np.full(k, s_lon), np.full(k, s_lat), AZ, np.full(k, w * (1 - 1e-9))
        )
        assert inside_all(poly, np.asarray(plon), np.asarray(plat))
    # No vertex farther from the centre line than the stated error (with the sampling's slack).
    ring = np.asarray(poly.exterior.coords)
    _, _, step = GEOD.inv(samples[:-1, 0], samples[:-1, 1], samples[1:, 0], samples[1:, 1])
    slack = float(np.max(step)) / 2
    for v_lon, v_lat in ring[::2]:
        _, _, d = GEOD.inv(
            np.full(len(samples), v_lon), np.full(len(samples), v_lat), samples[:, 0], samples[:, 1]
        )
        assert float(np.min(d)) <= w + err + slack + 1e-6 * w
    # The stated error: the arcs' chords (1.1%) and the plane's scale across the shape, which
    # grows with latitude and the corridor's north-south extent (here up to 1.2 degrees).
    lat = float(np.max(np.abs(pts[:, 1]))) + 1.3
    assert err <= (0.012 + 1.1 * np.tan(np.radians(lat)) * np.radians(1.3)) * w + 1e-6


def test_thin_corridor_error_is_tiny() -> None:
    _, _, poly, err = corridor_footprint([[35, 33], [35.5, 33.2]], 0.5, "k")
    assert err < 0.01
    assert poly.is_valid


@settings(max_examples=40, deadline=None)
@given(
    lon=st.floats(-170, 170),
    lat=st.floats(-75, 75),
    radius=st.floats(10.0, 50_000.0),
    shift=st.floats(0.0, 1.5),
)
def test_intersection_areas_match_pyproj(
    lon: float, lat: float, radius: float, shift: float
) -> None:
    try:
        _, _, a, _ = circle_footprint([lon, lat], radius, "a")
        _, _, b, _ = circle_footprint([lon + shift * (a.bounds[2] - a.bounds[0]), lat], radius, "b")
    except InputError:
        assume(False)
        return
    inter = shapely.intersection(a, b)
    [area] = areas_m2(np.array([inter], dtype=object))
    assert area == pytest.approx(geodesic_area_m2(inter), rel=1e-4, abs=1e-3)
