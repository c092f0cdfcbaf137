"""The engine against a brute-force oracle: random data and the issue's edge cases."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import numpy as np
import pytest
import shapely
from deconfliction_helpers import (
    T0_US,
    collection,
    feature,
    oracle,
    rect,
    volumes,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hotline.deconfliction import (
    FT,
    NM,
    OWN,
    ConflictKind,
    Engine,
    Volume,
    parse_geojson,
    volumes_conflict,
)
from hotline.deconfliction import _index as index_module


def engine_pairs(queries: list[Volume], active: list[Volume], **kw: Any) -> set[tuple[str, str]]:
    engine = Engine(**kw)
    engine.add(active)
    return {(c.query.id, c.active.id) for c in engine.conflicts(queries)}


# ---- random data on a coarse lattice, so that shared edges and vertices are common -------------

STEP = 0.05


@st.composite
def features(draw: st.DrawFn, prefix: str, i: int) -> dict[str, Any]:
    kind = draw(st.sampled_from(["rect", "tri", "circle", "corridor"]))
    x = 35 + STEP * draw(st.integers(0, 12))
    y = 33 + STEP * draw(st.integers(0, 12))
    w = STEP * draw(st.integers(1, 4))
    h = STEP * draw(st.integers(1, 4))
    if kind == "rect":
        geom = rect(x, y, x + w, y + h)
        extra: dict[str, Any] = {}
    elif kind == "tri":
        geom = {"type": "Polygon", "coordinates": [[[x, y], [x + w, y], [x, y + h], [x, y]]]}
        extra = {}
    elif kind == "circle":
        geom = {"type": "Point", "coordinates": [x, y]}
        extra = {"radius_m": draw(st.sampled_from([50.0, 1_000.0, 4_000.0]))}
    else:
        geom = {"type": "LineString", "coordinates": [[x, y], [x + w, y + h]]}
        extra = {"half_width_m": draw(st.sampled_from([0.5, 100.0, 2_000.0]))}
    lo = 100 * draw(st.integers(0, 10))
    hi = lo + 100 * draw(st.integers(0, 5))
    t0 = draw(st.integers(0, 10))
    t1 = t0 + draw(st.integers(1, 4))
    return feature(f"{prefix}{i}", geom, lo=lo, hi=hi, t0=t0, t1=t1, **extra)


@st.composite
def volume_sets(draw: st.DrawFn, prefix: str, max_size: int) -> list[Volume]:
    n = draw(st.integers(0, max_size))
    return parse_geojson(collection(*(draw(features(prefix, i)) for i in range(n))))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(volume_sets("q", 12), volume_sets("a", 40))
def test_random_sets_match_the_oracle(queries: list[Volume], active: list[Volume]) -> None:
    assert engine_pairs(queries, active) == oracle(queries, active)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(volume_sets("q", 12), volume_sets("a", 40))
def test_random_sets_match_the_oracle_with_disc_filters(
    queries: list[Volume], active: list[Volume]
) -> None:
    saved = index_module.DISC_MIN_PAIRS, index_module.VERTEX_MIN_TESTS
    # Decide every pair it can with the discs and the query's vertices.
    index_module.DISC_MIN_PAIRS = index_module.VERTEX_MIN_TESTS = 0
    try:
        assert engine_pairs(queries, active) == oracle(queries, active)
    finally:
        index_module.DISC_MIN_PAIRS, index_module.VERTEX_MIN_TESTS = saved


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(volume_sets("q", 8), volume_sets("a", 30), st.integers(0, 29))
def test_pending_oversize_and_removal_paths_match_the_oracle(
    queries: list[Volume], active: list[Volume], cut: int
) -> None:
    # Build the grid over part of the data, leave the rest pending, remove one, force oversize.
    engine = Engine(workers=1)
    engine.add(active[:cut])
    engine.rebuild()
    engine.add(active[cut:])
    removed = active[min(cut // 2, len(active) - 1)] if active else None
    if removed is not None:
        engine.remove(removed.key)
    live = [v for v in active if v is not removed]
    got = {(c.query.id, c.active.id) for c in engine.conflicts(queries)}
    assert got == oracle(queries, live)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(volume_sets("q", 6), volume_sets("a", 40))
def test_single_queries_on_a_built_grid_match_the_oracle(
    queries: list[Volume], active: list[Volume]
) -> None:
    # One query at a time takes its own path through the grid (``_grid_candidates_one``).
    engine = Engine(workers=1)
    engine.add(active)
    engine.rebuild()
    got = {(c.query.id, c.active.id) for q in queries for c in engine.conflicts(q)}
    assert got == oracle(queries, active)


@pytest.mark.parametrize("gap", [0.0, 1e-7, 1e-3])
def test_octagon_filter_keeps_footprints_touching_along_a_diagonal(
    gap: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two triangles share an edge along which u = x * DISC_X_SCALE + y is constant: their boxes
    # overlap and their octagons touch exactly; moved apart by ``gap`` they do not meet.
    monkeypatch.setattr(index_module, "DISC_MIN_PAIRS", 0)
    s = index_module.DISC_X_SCALE
    a = [[35.0, 33.0], [36.0, 33.0], [35.0, 33.0 + s], [35.0, 33.0]]
    b = [[36.0 + gap, 33.0], [36.0 + gap, 33.0 + s], [35.0 + gap, 33.0 + s], [36.0 + gap, 33.0]]
    active = volumes(feature("a", {"type": "Polygon", "coordinates": [a]}))
    queries = volumes(feature("q", {"type": "Polygon", "coordinates": [b]}))
    expected = oracle(queries, active)
    assert expected == ({("q", "a")} if gap == 0.0 else set())
    assert engine_pairs(queries, active) == expected
    engine = Engine(workers=1)
    engine.add(active)
    engine.rebuild()
    assert {(c.query.id, c.active.id) for c in engine.conflicts(queries)} == expected


def test_oversize_volumes_are_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_module, "MAX_CELLS_PER_VOLUME", 1)
    active = volumes(
        feature("big", rect(35, 33, 36, 34), lo=0, hi=10_000, t0=0, t1=20),
        *(feature(f"s{i}", rect(35 + i * 0.1, 33, 35.05 + i * 0.1, 33.05)) for i in range(10)),
    )
    queries = volumes(feature("q", rect(35.5, 33.5, 35.6, 33.6), t0=3, t1=4))
    assert engine_pairs(queries, active) == oracle(queries, active) == {("q", "big")}


def test_large_random_batch_matches_the_oracle_with_threads() -> None:
    rng = np.random.default_rng(3)
    feats = []
    for i in range(600):
        x, y = rng.uniform(35, 37), rng.uniform(33, 35)
        s = rng.uniform(0.01, 0.2)
        lo = float(rng.integers(0, 50) * 100)
        t0 = float(rng.integers(0, 48))
        feats.append(
            feature(f"v{i}", rect(x, y, x + s, y + s), lo=lo, hi=lo + 500, t0=t0, t1=t0 + 3)
        )
    vols = volumes(*feats)
    queries = [v.with_owner("peer") for v in vols[:300]]
    engine = Engine(workers=2)
    engine.add(vols)
    got = {(c.query.id, c.active.id) for c in engine.conflicts(queries)}
    expected = {(q.id, a.id) for q in queries for a in vols if volumes_conflict(q, a)}
    assert got == expected
    assert len(got) > 300  # the data does meet: same-id pairs count here (other owner)


def _lattice_batch() -> tuple[list[Volume], list[Volume]]:
    rng = np.random.default_rng(5)
    feats = []
    for i in range(500):
        x, y = rng.uniform(35, 36), rng.uniform(33, 34)
        w, h = rng.uniform(0.01, 0.15, 2)
        lo = float(rng.integers(0, 30) * 100)
        t0 = float(rng.integers(0, 24))
        feats.append(
            feature(f"v{i}", rect(x, y, x + w, y + h), lo=lo, hi=lo + 800, t0=t0, t1=t0 + 4)
        )
    vols = volumes(*feats)
    return vols, [v.with_owner("peer") for v in vols[:200]]


def _pairs_of(engine: Engine, queries: list[Volume]) -> set[tuple[str, str]]:
    return {(c.query.id, c.active.id) for c in engine.conflicts(queries)}


@pytest.mark.parametrize("shared_bytes", [32 << 20, 1_000])
def test_a_batch_shared_with_helper_processes_matches_the_oracle(
    shared_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small chunks and threshold so that a test-sized batch is shared with forked helpers;
    # with 1,000 shared bytes, requests and answers go through the pipes instead.
    if not index_module._CAN_FORK:
        pytest.skip("batches use helper processes on Linux only")
    monkeypatch.setattr(index_module, "CHUNK", 16)
    monkeypatch.setattr(index_module, "FORK_MIN_QUERIES", 32)
    monkeypatch.setattr(index_module, "SHM_HALF", shared_bytes)
    vols, queries = _lattice_batch()
    engine = Engine(workers=3)
    engine.add(vols[:-1])
    engine.rebuild()
    expected = {(q.id, a.id) for q in queries for a in vols[:-1] if volumes_conflict(q, a)}
    assert _pairs_of(engine, queries) == expected
    assert len(expected) > 200
    pids = [h.pid for h in engine._helpers]
    assert len(pids) == 2 and all(h.alive for h in engine._helpers)
    # The same helpers answer the next batch; a change to the index retires them.
    assert _pairs_of(engine, queries) == expected
    assert [h.pid for h in engine._helpers] == pids
    old = list(engine._helpers)
    engine.add(vols[-1:])
    expected = {(q.id, a.id) for q in queries for a in vols if volumes_conflict(q, a)}
    assert _pairs_of(engine, queries) == expected
    assert not any(h.alive for h in old)
    assert {h.pid for h in engine._helpers}.isdisjoint(pids)


def test_the_dense_and_the_searched_cell_lookups_agree() -> None:
    """Cells are looked up in a dense table where the grid has no more cells than entries, by
    binary search otherwise: the same entries either way, for batches and single queries."""
    vols, queries = _lattice_batch()
    engine = Engine(workers=1)
    engine.add(vols)
    engine.rebuild()
    grid = engine._grid
    assert grid is not None and grid.dense is not None
    keys = np.arange(int(np.prod(grid.n)), dtype=np.int64).astype(grid.key_type)
    dense = grid.lookup(keys)
    expected = {(c.query.id, c.active.id) for c in engine.conflicts(queries)}
    singles = {(c.query.id, c.active.id) for q in queries[:40] for c in engine.conflicts(q)}
    grid.dense = None
    searched = grid.lookup(keys)
    assert np.array_equal(dense[1], searched[1])
    assert np.array_equal(dense[0][dense[1] > 0], searched[0][searched[1] > 0])
    assert (dense[1] == 0).any() and dense[1].sum() == len(grid.entries)
    assert {(c.query.id, c.active.id) for c in engine.conflicts(queries)} == expected
    assert {(c.query.id, c.active.id) for q in queries[:40] for c in engine.conflicts(q)} == singles
    assert expected == oracle(queries, vols)


def test_a_request_to_a_helper_carries_every_kind_of_footprint_exactly() -> None:
    """Plain rings travel as coordinates, the rest (holes, several parts) as WKB: both come
    back identical, in their places, with boxes, bounds and own slots."""
    vols, _ = _lattice_batch()
    odd = [
        shapely.MultiPolygon([shapely.box(35, 33, 35.1, 33.1), shapely.box(36, 34, 36.1, 34.1)]),
        shapely.Polygon(
            shapely.box(35, 33, 35.4, 33.4).exterior.coords,
            [shapely.box(35.1, 33.1, 35.2, 33.2).exterior.coords],
        ),
    ]
    plain = [v.footprint for v in vols[:20]]
    for footprints in (plain[:5] + odd[:1] + plain[5:] + odd[1:], plain, odd, []):
        geoms = np.empty(len(footprints), object)
        geoms[:] = footprints
        bounds = shapely.bounds(geoms).reshape(-1, 4)
        box = np.arange(8.0 * len(geoms)).reshape(-1, 8)
        slots = np.arange(len(geoms), dtype=np.int64) - 1
        msg = index_module._pack_request(box, geoms, bounds, slots)
        box2, geoms2, bounds2, slots2 = index_module._unpack_request(msg)
        assert geoms2 is not None and bounds2 is not None
        assert np.array_equal(box2, box) and np.array_equal(slots2, slots)
        assert np.array_equal(bounds2, bounds)
        assert [g.wkb for g in geoms2] == [g.wkb for g in geoms]
    box2, geoms2, bounds2, slots2 = index_module._unpack_request(
        index_module._pack_request(box, None, None, slots)
    )
    assert geoms2 is None and bounds2 is None and np.array_equal(slots2, slots)


def test_a_process_forked_later_does_not_use_or_end_its_parents_helper(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not index_module._CAN_FORK:
        pytest.skip("batches use helper processes on Linux only")
    monkeypatch.setattr(index_module, "CHUNK", 16)
    monkeypatch.setattr(index_module, "FORK_MIN_QUERIES", 32)
    vols, queries = _lattice_batch()
    engine = Engine(workers=2)
    engine.add(vols)
    expected = {(q.id, a.id) for q in queries for a in vols if volumes_conflict(q, a)}
    assert _pairs_of(engine, queries) == expected
    (helper,) = engine._helpers
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        ok = False
        try:
            ok = _pairs_of(engine, queries) == expected and engine._helpers[0] is not helper
            engine.close()
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    assert helper.alive and engine._helpers == [helper]
    assert _pairs_of(engine, queries) == expected
    assert engine._helpers == [helper]


def test_a_helper_that_dies_loses_no_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    if not index_module._CAN_FORK:
        pytest.skip("batches use helper processes on Linux only")
    monkeypatch.setattr(index_module, "CHUNK", 16)
    monkeypatch.setattr(index_module, "FORK_MIN_QUERIES", 32)
    vols, queries = _lattice_batch()
    engine = Engine(workers=2)
    engine.add(vols)
    expected = {(q.id, a.id) for q in queries for a in vols if volumes_conflict(q, a)}
    assert _pairs_of(engine, queries) == expected
    (helper,) = engine._helpers
    os.kill(helper.pid, signal.SIGKILL)  # reaped by the engine when it closes the helper
    # Its share is computed here (the dead helper answers nothing), then a new one is forked.
    assert _pairs_of(engine, queries) == expected
    assert _pairs_of(engine, queries) == expected
    assert engine._helpers and engine._helpers[0] is not helper


_start_codes = st.integers(0, index_module.CODE_LEVELS + 1)
_end_codes = st.integers(1, index_module.CODE_LEVELS + 1)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(_start_codes, min_size=4, max_size=4),
            st.lists(_end_codes, min_size=4, max_size=4),
            st.lists(_start_codes, min_size=4, max_size=4),
            st.lists(_end_codes, min_size=4, max_size=4),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_the_lane_wise_code_test_agrees_with_a_lane_by_lane_one(
    rows: list[tuple[list[int], list[int], list[int], list[int]]],
) -> None:
    """``_codes_pass`` compares four byte lanes at once with borrows and carries that must
    never cross a lane: against the plain comparison, one dimension at a time."""

    def packed(lo: list[int], hi: list[int]) -> int:
        return int.from_bytes(bytes(lo) + bytes(h | 0x80 for h in hi), sys.byteorder)

    e = np.array([packed(el, eh) for el, eh, _, _ in rows], np.uint64)
    q = np.array([packed(ql, qh) for _, _, ql, qh in rows], np.uint64)
    want = [
        all(el[d] <= qh[d] and ql[d] <= eh[d] and (el[d] > 0 or ql[d] > 0) for d in range(4))
        for el, eh, ql, qh in rows
    ]
    assert index_module._codes_pass(e, q).tolist() == want


def test_cell_codes_keep_every_overlapping_pair_once() -> None:
    """Boxes on a coarse lattice (so that many touch exactly, at cell borders too): each pair
    whose boxes overlap passes the code test in exactly one cell both cover, and pairs whose
    boxes are apart by more than a code step pass in none."""
    rng = np.random.default_rng(5)
    n = 300
    lows = rng.integers(0, 40, (n, 4)).astype(float) / 4
    box = np.hstack([lows, lows + rng.integers(0, 12, (n, 4)) / 4])
    grid = index_module._Grid(box)
    lo, hi = grid.cells(box[:, :4]), grid.cells(box[:, 4:])
    owner, keys, first, cells = grid.expand(lo, hi, np.prod(hi - lo + 1, axis=1))
    codes = grid.quantize(grid.norm(box)[owner], cells, first)
    by_key: dict[int, list[int]] = {}
    for row, key in enumerate(keys.tolist()):
        by_key.setdefault(key, []).append(row)
    passes: dict[tuple[int, int], int] = {}
    for rows in by_key.values():
        r = np.array(rows)
        a, b = np.repeat(r, len(r)), np.tile(r, len(r))
        ok = index_module._codes_pass(codes[a], codes[b])
        for i, j in zip(owner[a[ok]].tolist(), owner[b[ok]].tolist(), strict=True):
            passes[i, j] = passes.get((i, j), 0) + 1
    overlap = np.all(box[:, None, :4] <= box[None, :, 4:], axis=2)
    overlap &= np.all(box[None, :, :4] <= box[:, None, 4:], axis=2)
    gap = np.maximum(box[:, None, :4] - box[None, :, 4:], box[None, :, :4] - box[:, None, 4:])
    apart = (gap > 5 * grid.size / index_module.CODE_LEVELS).any(axis=2)  # codes: 2 steps out
    for i, j in zip(*np.nonzero(overlap), strict=True):
        assert passes.get((int(i), int(j))) == 1
    assert overlap.sum() > 2 * n
    for i, j in zip(*np.nonzero(apart), strict=True):
        assert (int(i), int(j)) not in passes


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    volume_sets("q", 6),
    st.lists(
        st.tuples(
            st.integers(0, 5), st.floats(34.9, 35.8), st.floats(32.9, 33.8), st.floats(0, 0.2)
        ),
        max_size=30,
    ),
)
def test_vertices_in_discs_finds_exactly_the_vertices_clearly_inside(
    queries: list[Volume], discs: list[tuple[int, float, float, float]]
) -> None:
    """``_vertices_in_discs`` (a shortcut past GEOS) says yes only for a footprint with a vertex
    inside the disc by more than the margins, and for every such footprint (a plain loop over
    the vertices, in the disc plane)."""
    if not queries:
        return
    geoms = np.array([v.footprint for v in queries], dtype=object)
    q = np.array([k % len(queries) for k, _, _, _ in discs], dtype=np.int64)
    packed = np.array(
        [(x * index_module.DISC_X_SCALE, y, r, r) for _, x, y, r in discs], dtype=float
    ).reshape(-1, 4)
    coords = shapely.get_coordinates(geoms, return_index=True)
    got = index_module._vertices_in_discs(coords, len(geoms), q, packed)
    rel, eps = index_module.DISC_REL, index_module.DISC_ABS
    for k, (_, x, y, r) in enumerate(discs):
        xy = shapely.get_coordinates(geoms[q[k]])
        dist = np.hypot((xy[:, 0] - x) * index_module.DISC_X_SCALE, xy[:, 1] - y)
        inner = r * (1 - rel) - eps
        if got[k]:
            assert inner > 0 and (dist < inner * (1 + 1e-12)).any()
        else:
            assert not (dist < inner * (1 - 1e-12)).any()


def test_discs_and_octagons_in_one_pass_agree_with_the_separate_ones() -> None:
    vols, _ = _lattice_batch()
    vols += volumes(
        feature("c", {"type": "Point", "coordinates": [35.5, 33.5]}, radius_m=3_000.0),
        feature(
            "k", {"type": "LineString", "coordinates": [[35, 33], [35.4, 33.2]]}, half_width_m=50.0
        ),
    )
    geoms = np.array([v.footprint for v in vols], dtype=object)
    bounds = shapely.bounds(geoms)
    disc, octs = index_module.discs_and_octagons(geoms, bounds)
    assert np.array_equal(octs, index_module.octagons(geoms))
    assert np.allclose(disc, index_module.Discs.of(geoms, bounds).packed(), rtol=1e-12, atol=0)
    assert (disc[:, 3] > 0).sum() > len(vols) // 2


def test_the_centre_crossing_count_agrees_with_geos_on_awkward_footprints() -> None:
    # Rays from the box centre through vertices (diamond, arrow), a concave footprint whose box
    # centre is outside (a U), a hole around the centre, two parts, and random star polygons.
    u = [[35, 33], [36, 33], [36, 34], [35.9, 34], [35.9, 33.1], [35.1, 33.1], [35.1, 34], [35, 34]]
    shapes = [
        shapely.Polygon([(35, 33.5), (35.5, 33), (36, 33.5), (35.5, 34)]),
        shapely.Polygon([(35, 33.5), (35.5, 33.5), (36, 33), (36, 34), (35.5, 33.5)]).buffer(0),
        shapely.Polygon([*u, u[0]]),
        shapely.Polygon(
            [(35, 33), (36, 33), (36, 34), (35, 34)],
            [[(35.4, 33.4), (35.6, 33.4), (35.6, 33.6), (35.4, 33.6)]],
        ),
        shapely.MultiPolygon(
            [
                shapely.Polygon([(35, 33), (35.2, 33), (35.2, 33.2)]),
                shapely.Polygon([(35.8, 33.8), (36, 33.8), (36, 34)]),
            ]
        ),
    ]
    rng = np.random.default_rng(11)
    for _ in range(300):
        k = int(rng.integers(3, 13))
        ang = (np.arange(k) + rng.uniform(0, 0.8, k)) * 2 * np.pi / k
        rad = rng.uniform(0.05, 1.0, k)
        shapes.append(
            shapely.Polygon(np.column_stack((35 + rad * np.cos(ang), 33 + rad * np.sin(ang))))
        )
    geoms = np.array(shapes, dtype=object)
    assert shapely.is_valid(geoms).all()
    bounds = shapely.bounds(geoms)
    disc, _ = index_module.discs_and_octagons(geoms, bounds)
    reference = index_module.Discs.of(geoms, bounds).packed()
    cx, cy = (bounds[:, 0] + bounds[:, 2]) / 2, (bounds[:, 1] + bounds[:, 3]) / 2
    inside = shapely.contains_xy(geoms, cx, cy) & (reference[:, 3] > index_module.CENTRE_EPS)
    assert np.array_equal(disc[:, 3] > 0, inside)
    assert not inside[2] and not inside[3] and inside[0]


def test_a_refused_fork_computes_the_batch_here(monkeypatch: pytest.MonkeyPatch) -> None:
    if not index_module._CAN_FORK:
        pytest.skip("batches fork worker processes on Linux only")
    monkeypatch.setattr(index_module, "CHUNK", 16)
    monkeypatch.setattr(index_module, "FORK_MIN_QUERIES", 32)

    def no_fork() -> int:
        raise OSError("fork refused")

    monkeypatch.setattr(index_module.os, "fork", no_fork)
    vols, queries = _lattice_batch()
    engine = Engine(workers=2)
    engine.add(vols)
    got = {(c.query.id, c.active.id) for c in engine.conflicts(queries)}
    assert got == {(q.id, a.id) for q in queries for a in vols if volumes_conflict(q, a)}


# ---- the edge cases ----------------------------------------------------------------------


def case(q: dict[str, Any], a: dict[str, Any]) -> bool:
    queries, active = volumes(q), volumes(a)
    got = engine_pairs(queries, active)
    assert got == oracle(queries, active)
    return bool(got)


def test_shared_edge_conflicts() -> None:
    assert case(feature("q", rect(35, 33, 35.1, 33.1)), feature("a", rect(35.1, 33, 35.2, 33.1)))


def test_shared_vertex_conflicts() -> None:
    assert case(feature("q", rect(35, 33, 35.1, 33.1)), feature("a", rect(35.1, 33.1, 35.2, 33.2)))


def test_disjoint_footprints_do_not_conflict() -> None:
    assert not case(
        feature("q", rect(35, 33, 35.1, 33.1)), feature("a", rect(35.1000001, 33, 35.2, 33.1))
    )


def test_volume_inside_another_conflicts() -> None:
    assert case(feature("q", rect(35, 33, 36, 34)), feature("a", rect(35.4, 33.4, 35.5, 33.5)))


def test_identical_volumes_conflict() -> None:
    assert case(feature("q", rect(35, 33, 36, 34)), feature("a", rect(35, 33, 36, 34)))


def test_zero_height_band_conflicts_inside_and_at_the_edge() -> None:
    assert case(
        feature("q", rect(35, 33, 36, 34), lo=500, hi=500),
        feature("a", rect(35, 33, 36, 34), lo=0, hi=500),
    )
    assert not case(
        feature("q", rect(35, 33, 36, 34), lo=500, hi=500),
        feature("a", rect(35, 33, 36, 34), lo=501, hi=900),
    )


def test_touching_bands_conflict() -> None:
    assert case(
        feature("q", rect(35, 33, 36, 34), lo=0, hi=1000),
        feature("a", rect(35, 33, 36, 34), lo=1000, hi=2000),
    )


def test_touching_time_windows_do_not_conflict() -> None:
    assert not case(
        feature("q", rect(35, 33, 36, 34), t0=0, t1=1),
        feature("a", rect(35, 33, 36, 34), t0=1, t1=2),
    )
    assert case(
        feature("q", rect(35, 33, 36, 34), t0=0, t1=1.0001),
        feature("a", rect(35, 33, 36, 34), t0=1, t1=2),
    )


def test_very_thin_corridors() -> None:
    line = {"type": "LineString", "coordinates": [[35.0, 33.0], [35.5, 33.0]]}
    crossing = {"type": "LineString", "coordinates": [[35.25, 32.9], [35.25, 33.1]]}
    assert case(feature("q", line, half_width_m=0.1), feature("a", crossing, half_width_m=0.1))
    parallel = {"type": "LineString", "coordinates": [[35.0, 33.00001], [35.5, 33.00001]]}
    # 1.1 m apart, half-widths 0.1 m: no conflict.
    assert not case(feature("q", line, half_width_m=0.1), feature("a", parallel, half_width_m=0.1))


def test_volumes_near_the_antimeridian() -> None:
    assert case(
        feature("q", rect(179.8, 10, 179.99, 10.1)), feature("a", rect(179.9, 10.05, 179.999, 11))
    )
    assert not case(
        feature("q", rect(179.8, 10, 179.99, 10.1)), feature("a", rect(-179.99, 10, -179.8, 10.1))
    )
    assert case(
        feature("q", rect(-179.999, -40, -179.9, -39.9)),
        feature("a", {"type": "Point", "coordinates": [-179.95, -39.95]}, radius_m=100),
    )


def test_multipolygon_part_touching() -> None:
    multi = {
        "type": "MultiPolygon",
        "coordinates": [
            rect(35, 33, 35.1, 33.1)["coordinates"],
            rect(36, 33, 36.1, 33.1)["coordinates"],
        ],
    }
    assert case(feature("q", multi), feature("a", rect(36.1, 33.1, 36.2, 33.2)))
    assert not case(feature("q", multi), feature("a", rect(35.5, 33, 35.6, 33.1)))


# ---- results, owners, expiry, near misses -------------------------------------------------------


def test_conflict_details_and_kinds() -> None:
    ours = volumes(feature("ours", rect(35, 33, 35.2, 33.2), lo=1000, hi=3000, t0=0, t1=4))
    theirs = volumes(
        feature("theirs", rect(35.1, 33.1, 35.3, 33.3), lo=2000, hi=5000, t0=2, t1=6),
        owner="Moscow",
    )
    engine = Engine()
    engine.add(ours)
    [c] = engine.conflicts(theirs)
    assert c.kind == ConflictKind.OWN_VS_PEER
    assert (c.time_start_us, c.time_end_us) == (
        T0_US + 2 * 3_600_000_000,
        T0_US + 4 * 3_600_000_000,
    )
    assert (c.altitude_lower, c.altitude_upper) == (2000, 3000)
    # 0.1 x 0.1 degrees at 33.15 N: about 11.09 km x 9.33 km.
    assert c.area_m2 == pytest.approx(103.5e6, rel=0.01)
    d = c.to_dict()
    assert {"query", "active", "time_start", "time_end", "altitude_lower", "altitude_upper"} <= set(
        d
    )
    assert d["query"] == "theirs" and d["active"] == "ours" and d["area_m2"] > 0


def test_a_volume_never_conflicts_with_itself_but_same_id_of_another_owner_does() -> None:
    vols = volumes(feature("x", rect(35, 33, 36, 34)))
    engine = Engine()
    engine.add(vols)
    assert engine.conflicts(vols) == []
    other = [vols[0].with_owner("Moscow")]
    assert [c.kind for c in engine.conflicts(other)] == [ConflictKind.OWN_VS_PEER]


def test_expiry_by_now_passed_in() -> None:
    vols = volumes(
        feature("early", rect(35, 33, 36, 34), t0=0, t1=1),
        feature("late", rect(35, 33, 36, 34), t0=0, t1=5),
    )
    engine = Engine()
    engine.add(vols)
    gone = engine.expire(T0_US + 3_600_000_000)  # exactly the end of "early": ended
    assert [v.id for v in gone] == ["early"]
    assert [v.id for v in engine.volumes()] == ["late"]
    engine.rebuild()
    assert [v.id for v in engine.volumes()] == ["late"]


def test_replacing_a_volume_keeps_one_copy() -> None:
    engine = Engine()
    engine.add(volumes(feature("x", rect(35, 33, 36, 34))))
    engine.add(volumes(feature("x", rect(40, 33, 41, 34))))
    assert len(engine) == 1
    q = volumes(feature("q", rect(35.5, 33.5, 35.6, 33.6)))
    assert engine.conflicts(q) == []


def test_near_misses_within_5_nm_and_1000_ft() -> None:
    active = volumes(
        feature("near", rect(35.05, 33, 35.1, 33.05), lo=1200, hi=2000),  # ~4.6 km east, 200 m up
        feature("far", rect(35.2, 33, 35.3, 33.05), lo=1000, hi=2000),  # ~18 km east
        feature("high", rect(35.05, 33, 35.1, 33.05), lo=1400, hi=2000),  # 400 m above: > 1000 ft
        feature("hit", rect(35.0, 33, 35.01, 33.05), lo=0, hi=2000),  # a conflict, not a near miss
    )
    q = volumes(feature("q", rect(35.0, 33.0, 35.0005, 33.05), lo=0, hi=1000), owner="peer")
    engine = Engine()
    engine.add(active)
    near = engine.near_misses(q, horizontal_m=5 * NM, vertical_m=1000 * FT)
    assert [n.active.id for n in near] == ["near"]
    assert near[0].horizontal_m == pytest.approx(4620, rel=0.01)
    assert near[0].vertical_m == pytest.approx(200)
    assert [c.active.id for c in engine.conflicts(q)] == ["hit"]


def test_a_batch_that_rebuilds_the_grid_excludes_each_query_itself_exactly() -> None:
    """A batch of more than 64 queries rebuilds the grid when many volumes are pending, which
    renumbers the slots. Each query's own slot must be taken after that: taken before (as it
    once was), queries that are themselves indexed were paired with themselves and missed
    the volume that took their old slot."""
    rng = np.random.default_rng(1)
    feats = []
    for i in range(800):
        x, y = rng.uniform(35, 36), rng.uniform(33, 34)
        lo = float(rng.integers(0, 4) * 1000)
        feats.append(feature(f"v{i}", rect(x, y, x + 0.1, y + 0.1), lo=lo, hi=lo + 500))
    vols = volumes(*feats)
    queries = vols[:300]

    def pending_engine() -> Engine:
        engine = Engine(workers=1)
        engine.add(vols[:100])
        engine.rebuild()
        engine.add(vols[100:])  # more than PENDING_MAX / 4 pending: the batch rebuilds first
        assert engine._cols.n - engine._built_n > index_module.PENDING_MAX // 4
        return engine

    got = {(c.query.id, c.active.id) for c in pending_engine().conflicts(queries)}
    assert got == oracle(queries, vols)
    built = Engine(workers=1)
    built.add(vols)
    built.rebuild()

    def near(engine: Engine) -> set[tuple[str, str, float]]:
        return {
            (n.query.id, n.active.id, n.vertical_m)
            for n in engine.near_misses(queries, horizontal_m=2_000.0, vertical_m=600.0)
        }

    expected = near(built)
    assert expected and near(pending_engine()) == expected


def test_owner_constant() -> None:
    assert OWN == "own"
