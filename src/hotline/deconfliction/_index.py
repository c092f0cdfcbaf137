"""The in-memory 4D index: a uniform grid over (lon, lat, time, altitude), pruned with numpy.

How a query runs (vectorized over a chunk of queries; with ``workers`` > 1 a large batch is
shared with helper processes forked from this one, ``_Helper``):

1. Cells. Each indexed volume is registered in every grid cell its 4D box covers; cell sizes are
   ``CELL_FACTOR`` times the mean extent of the volumes in each dimension. Volumes that would
   cover more than ``MAX_CELLS_PER_VOLUME`` cells live in an ``oversize`` list every query scans.
2. Candidates: the entries of the cells a query's box covers.
3. Duplicates: a pair met in several cells is kept only in the cell holding the greatest of its
   two lower corners (both boxes cover that point), so each pair is reported once; decided from
   whether the entry or the query starts in the cell, along each dimension, before any box is
   read.
4. 4D box filter: first on each entry's box as seen from its cell (8 bytes, rounded outwards: a
   superset; with step 3 in one lane-wise integer test, ``_codes_pass``), then exactly. Boxes
   are packed as rows of 8 floats (lower corner, upper corner) with every dimension closed: a
   time window ``[start, end)`` in integer microseconds is the closed ``[start, end - 1]``
   (exact in float64 up to the year 2255; the parsers refuse later times).
5. Discs (``Discs``; computed by ``discs_and_octagons``): pairs whose outer discs are apart are
   dropped, pairs whose inner discs overlap are kept, both without asking GEOS. Octagons
   (``octagons``): pairs whose footprints' ranges along a diagonal axis are apart are dropped
   too (about a quarter of what would go to GEOS on issue 5's data, nearly all of them pairs
   that do not meet). Pairs where a vertex of the query lies inside the other footprint's
   inner disc are kept (``_vertices_in_discs``; a third of the rest on issue 5's data).
6. Exact footprint test on the rest: ``shapely.intersects`` (touching counts); a query tested
   against ``PREPARE_MIN_TESTS`` or more is prepared first.

Volumes added after the last build wait in a ``pending`` list that queries scan directly; the grid
is rebuilt when that list grows past ``PENDING_MAX``. A removed or expired volume gets an empty
box (it matches nothing) and is compacted away at the next rebuild.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import mmap
import os
import signal
import struct
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

from hotline.deconfliction._volume import POLYGON_SHAPE, Shape, Volume

#: Volumes added since the last build that queries scan one by one before the grid is rebuilt.
PENDING_MAX = 2_048
#: A volume whose box covers more grid cells than this is kept in the oversize list instead.
MAX_CELLS_PER_VOLUME = 256
#: Cells per dimension at most (keeps cell keys inside int64 and the grid small).
MAX_CELLS_PER_DIM = 4_096
#: Grid cell size as a multiple of the mean extent of the indexed volumes, per dimension: about
#: 1.7 cells per volume and dimension; larger cells mean fewer entries but more candidates.
CELL_FACTOR = 1.5
#: Steps across a grid cell of the entries' quantized boxes: codes 0 to ``CODE_LEVELS + 1``
#: must fit in 7 bits (one byte a coordinate, its top bit free for the lane-wise test).
CODE_LEVELS = 126
#: The top bit of each of the four bytes of a uint32 (the lanes of ``_codes_pass``).
_LANE_TOP = np.uint32(0x80808080)
_LANE_LOW = np.uint32(0x7F7F7F7F)
#: Volumes expanded into grid entries (and entries coded) at a time while building: bounds the
#: build's temporaries, hence the peak memory of a load.
BUILD_CHUNK = 100_000
#: Longitude scale of the plane in which the disc filters work (cos 35 degrees: round discs for
#: shapes at mid latitudes). Only speed depends on it: the filters are exact at any scale.
DISC_X_SCALE = 0.82
#: Relative and absolute margins (degrees) that keep the disc filters on the safe side of
#: floating-point rounding: a pair is decided without GEOS only when it is clear by more.
DISC_REL = 1e-9
DISC_ABS = 1e-12
#: A box centre closer than this (degrees, in the disc plane) to an edge of its footprint gets
#: no inner disc: the crossing count that says whether it is inside is robust beyond it.
CENTRE_EPS = 1e-9
#: Margins (degrees, relative and absolute) by which octagon ranges are widened: far more than
#: the rounding of ``x * DISC_X_SCALE +- y``, so a pair is dropped only when clearly apart.
OCT_REL = 1e-9
OCT_ABS = 1e-9
#: Fewest candidate pairs in a chunk for which computing the queries' discs pays off (a single
#: query at 10^6 volumes: p50 CPU 0.20 -> 0.15 ms with 48 instead of 24, p99 unchanged).
DISC_MIN_PAIRS = 48
#: Fewest exact tests of a query footprint for which it is prepared first (see _pairs_chunk).
PREPARE_MIN_TESTS = 8
#: Fewest pairs left for GEOS in a chunk for which the vertex test (``_vertices_in_discs``)
#: runs: its dozen numpy calls cost some 15 us, and it saves about 0.6 us a pair.
VERTEX_MIN_TESTS = 64
#: Queries handled per vectorized chunk (bounds the temporary arrays, about 64 MB at 10^6
#: volumes; larger chunks pay the fixed cost of numpy calls less often: at 10^5, one-thread CPU
#: of a batch 137, 126, 116 and 127 ms with 512, 1,024, 2,048 and 4,096; at 10^6 the same).
CHUNK = 2_048
#: Fewest queries in a batch for which sharing it with a helper process pays off (sending the
#: queries costs some milliseconds; the first such batch after a change forks the helper).
FORK_MIN_QUERIES = 2_048
#: How much more than an equal share of a batch this process takes: it makes and packs the
#: helper's share (about 3 ms of CPU at 10^5) before its own, and the helper answers through a
#: pipe. 2 processes, 10^5 volumes, load 7.5, CPU here / in the helper per batch (15 batches
#: each): 6% less here 55 / 59 ms, equal shares 57 / 55 ms, 6% more 60 / 54 ms, 12% more 63 /
#: 52 ms.
OWN_SHARE_EXTRA = 0.04
#: Bytes of a request or an answer passed through the memory shared with a helper (a batch of
#: 10,000 queries: about 2.5 MB each way at 10^6 volumes); larger ones go through the pipe.
SHM_HALF = 32 << 20
#: Batches run in forked worker processes only where fork is the native way (Linux).
_CAN_FORK = sys.platform == "linux" and hasattr(os, "fork")

F8 = np.dtype(np.float64)
I8 = np.dtype(np.int64)
Arr = np.ndarray[Any, Any]
#: Some queries: packed boxes, footprints and their bounds (None: boxes only), own slots.
_Queries = tuple[Arr, Arr | None, Arr | None, Arr]
#: The box of a removed volume: lower corner above every upper corner, so nothing overlaps it.
_EMPTY_BOX = np.array([np.inf] * 4 + [-np.inf] * 4)


def pack_boxes(volumes: Sequence[Volume], bounds: Arr) -> Arr:
    """Rows ``[xmin, ymin, t0, alt_lo, xmax, ymax, t1, alt_hi]``, every dimension closed."""
    n = len(volumes)
    return pack_columns(
        bounds,
        np.fromiter((v.time_start_us for v in volumes), I8, n),
        np.fromiter((v.time_end_us for v in volumes), I8, n),
        np.fromiter((v.altitude_lower for v in volumes), F8, n),
        np.fromiter((v.altitude_upper for v in volumes), F8, n),
    )


def pack_columns(bounds: Arr, start_us: Arr, end_us: Arr, lower: Arr, upper: Arr) -> Arr:
    """``pack_boxes`` from columns: a window [start, end) becomes the closed [start, end - 1]."""
    box = np.empty((len(bounds), 8), F8)
    box[:, 0] = bounds[:, 0]
    box[:, 1] = bounds[:, 1]
    box[:, 4] = bounds[:, 2]
    box[:, 5] = bounds[:, 3]
    box[:, 2] = start_us
    box[:, 6] = np.asarray(end_us, dtype=I8) - 1
    box[:, 3] = lower
    box[:, 7] = upper
    return box


@dataclass(frozen=True, slots=True)
class Columns:
    """Many volumes column-wise (what the store loads without making Volume objects)."""

    ids: list[str]
    owners: list[str]
    versions: Arr  # int
    shapes: list[Shape | None]  # None: a polygon (the shared POLYGON_SHAPE)
    errors: Arr  # max_error_m
    geoms: Arr  # object array of footprints
    box: Arr  # packed boxes

    @staticmethod
    def of(volumes: Sequence[Volume]) -> Columns:
        geoms = np.empty(len(volumes), object)
        geoms[:] = [v.footprint for v in volumes]
        bounds = shapely.bounds(geoms).reshape(-1, 4)
        return Columns(
            ids=[v.id for v in volumes],
            owners=[v.owner for v in volumes],
            versions=np.fromiter((v.version for v in volumes), I8, len(volumes)),
            shapes=[None if v.shape is POLYGON_SHAPE else v.shape for v in volumes],
            errors=np.fromiter((v.max_error_m for v in volumes), F8, len(volumes)),
            geoms=geoms,
            box=pack_boxes(volumes, bounds),
        )

    def take(self, idx: list[int]) -> Columns:
        return Columns(
            ids=[self.ids[i] for i in idx],
            owners=[self.owners[i] for i in idx],
            versions=self.versions[idx],
            shapes=[self.shapes[i] for i in idx],
            errors=self.errors[idx],
            geoms=self.geoms[idx],
            box=self.box[idx],
        )


@dataclass(frozen=True, slots=True)
class Discs:
    """Per footprint, in a plane with longitude scaled by ``DISC_X_SCALE``: the centre of its
    box, the radius of a disc around it that contains the footprint (``outer``), and the radius
    of a disc around it inside the footprint (``inner``; 0 when the centre is outside).

    Two footprints whose outer discs are apart do not intersect; two whose inner discs overlap
    do. Either way GEOS is not asked; only the pairs in between go to the exact predicate.
    """

    cx: Arr
    cy: Arr
    outer: Arr
    inner: Arr

    @staticmethod
    def of(geoms: Arr, bounds: Arr) -> Discs:
        n = len(geoms)
        cx = (bounds[:, 0] + bounds[:, 2]) / 2
        cy = (bounds[:, 1] + bounds[:, 3]) / 2
        if n == 0:
            return Discs(cx, cy, np.empty(0), np.empty(0))
        # All rings of a footprint in one run; the step from one ring to the next counts as an
        # edge too, which can only shrink the inner disc (it stays inside: still exact).
        xy, owner = shapely.get_coordinates(geoms, return_index=True)
        x = (xy[:, 0] - cx[owner]) * DISC_X_SCALE
        y = xy[:, 1] - cy[owner]
        starts = np.flatnonzero(np.concatenate(([True], owner[1:] != owner[:-1])))
        present = owner[starts]
        outer = np.zeros(n)
        outer[present] = np.maximum.reduceat(np.hypot(x, y), starts)
        # Distance from the centre (the origin here) to every edge of every ring.
        ax, ay, bx, by = x[:-1], y[:-1], x[1:], y[1:]
        dx, dy = bx - ax, by - ay
        den = dx * dx + dy * dy
        t = np.clip(-(ax * dx + ay * dy) / np.where(den > 0, den, 1.0), 0.0, 1.0)
        edge = np.hypot(ax + t * dx, ay + t * dy)
        edge = np.where(owner[:-1] == owner[1:], edge, np.inf)
        edge = np.append(edge, np.inf)
        nearest = np.zeros(n)
        nearest[present] = np.minimum.reduceat(edge, starts)
        inside = shapely.contains_xy(geoms, cx, cy)
        inner = np.where(inside, nearest, 0.0)
        return Discs(cx * DISC_X_SCALE, cy, outer, inner)

    def packed(self) -> Arr:
        return np.column_stack((self.cx, self.cy, self.outer, self.inner))


def discs_and_octagons(
    geoms: Arr, bounds: Arr, coords: tuple[Arr, Arr] | None = None
) -> tuple[Arr, Arr]:
    """``Discs.of(geoms, bounds).packed()`` and ``octagons(geoms)`` from one read of the
    coordinates (``coords``, ``shapely.get_coordinates(geoms, return_index=True)``, when the
    caller has them already), the distances compared squared (one square root per footprint,
    not per vertex or edge): the same values up to rounding, which the margins cover."""
    n = len(geoms)
    disc = np.zeros((n, 4))
    cx = (bounds[:, 0] + bounds[:, 2]) / 2
    cy = (bounds[:, 1] + bounds[:, 3]) / 2
    disc[:, 0], disc[:, 1] = cx * DISC_X_SCALE, cy
    octs = np.empty((n, 4))
    octs[:, :2], octs[:, 2:] = np.inf, -np.inf
    if n == 0:
        return disc, octs
    xy, owner = shapely.get_coordinates(geoms, return_index=True) if coords is None else coords
    if not len(owner):
        return disc, octs
    starts = np.flatnonzero(np.concatenate(([True], owner[1:] != owner[:-1])))
    present = owner[starts]
    xs = xy[:, 0] * DISC_X_SCALE
    u, v = xs + xy[:, 1], xs - xy[:, 1]
    octs[present, 0] = np.minimum.reduceat(u, starts)
    octs[present, 1] = np.minimum.reduceat(v, starts)
    octs[present, 2] = np.maximum.reduceat(u, starts)
    octs[present, 3] = np.maximum.reduceat(v, starts)
    margin = np.abs(octs) * OCT_REL + OCT_ABS
    octs[:, :2] -= margin[:, :2]
    octs[:, 2:] += margin[:, 2:]
    # As in Discs.of: all rings of a footprint in one run, the centre at the origin.
    x = (xy[:, 0] - cx[owner]) * DISC_X_SCALE
    y = xy[:, 1] - cy[owner]
    disc[present, 2] = np.sqrt(np.maximum.reduceat(x * x + y * y, starts))
    ax, ay = x[:-1], y[:-1]
    dx, dy = x[1:] - ax, y[1:] - ay
    den = dx * dx + dy * dy
    t = np.clip(-(ax * dx + ay * dy) / np.where(den > 0, den, 1.0), 0.0, 1.0)
    ex, ey = ax + t * dx, ay + t * dy
    same = owner[:-1] == owner[1:]
    edge = np.where(same, ex * ex + ey * ey, np.inf)
    edge = np.append(edge, np.inf)
    nearest = np.zeros(n)
    nearest[present] = np.sqrt(np.minimum.reduceat(edge, starts))
    inside = _centre_inside(geoms, cx, cy, ax, ay, dx, dy, same, starts, present, n)
    disc[:, 3] = np.where(inside & (nearest > CENTRE_EPS), nearest, 0.0)
    return disc, octs


def _centre_inside(
    geoms: Arr,
    cx: Arr,
    cy: Arr,
    ax: Arr,
    ay: Arr,
    dx: Arr,
    dy: Arr,
    same: Arr,
    starts: Arr,
    present: Arr,
    n: int,
) -> Arr:
    """Whether each footprint's box centre (the origin of the edges ``a -> a + d``) is inside
    it: by counting the edges that cross the ray from the centre towards +x, for footprints of
    one ring (most: their vertices are one closed ring, each step an edge); by GEOS for the
    others (holes, several parts). The count is decided only where it is robust: a centre
    within ``1e-9`` degrees of an edge counts as outside (its inner disc would be nil anyway),
    and a ray through a vertex counts that vertex as below the ray at both of its edges."""
    single = (shapely.get_type_id(geoms) == 3) & (shapely.get_num_interior_rings(geoms) == 0)
    by = ay + dy
    crosses = same & ((ay > 0) != (by > 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = ax - ay * dx / np.where(crosses, dy, 1.0)
    crosses &= x_at > 0
    count = np.zeros(n, I8)
    count[present] = np.add.reduceat(np.append(crosses, False).astype(I8), starts)
    inside: Arr = (count % 2) == 1
    others = np.flatnonzero(~single)
    if len(others):
        inside[others] = shapely.contains_xy(geoms[others], cx[others], cy[others])
    return inside


def octagons(geoms: Arr) -> Arr:
    """Per footprint, its ranges along the two diagonals of the disc plane: rows
    ``[min u, min v, max u, max v]`` with ``u = x * DISC_X_SCALE + y``, ``v = x * DISC_X_SCALE - y``
    over its vertices, widened by the margins. With the box, an octagon around the footprint:
    two footprints whose ``u`` (or ``v``) ranges are apart do not meet (``u`` is linear, so
    every point of a footprint lies within its vertices' range)."""
    n = len(geoms)
    out = np.empty((n, 4))
    out[:, :2], out[:, 2:] = np.inf, -np.inf
    if n == 0:
        return out
    xy, owner = shapely.get_coordinates(geoms, return_index=True)
    if not len(owner):
        return out
    xs = xy[:, 0] * DISC_X_SCALE
    u, v = xs + xy[:, 1], xs - xy[:, 1]
    starts = np.flatnonzero(np.concatenate(([True], owner[1:] != owner[:-1])))
    present = owner[starts]
    out[present, 0] = np.minimum.reduceat(u, starts)
    out[present, 1] = np.minimum.reduceat(v, starts)
    out[present, 2] = np.maximum.reduceat(u, starts)
    out[present, 3] = np.maximum.reduceat(v, starts)
    margin = np.abs(out) * OCT_REL + OCT_ABS
    out[:, :2] -= margin[:, :2]
    out[:, 2:] += margin[:, 2:]
    return out


def octagons32(geoms: Arr) -> Arr:
    """``octagons`` stored in float32 (16 bytes a volume), rounded outwards."""
    return _float32_outwards(octagons(geoms))


def _float32_outwards(out: Arr) -> Arr:
    small: Arr = out.astype(np.float32)
    small[:, :2] = np.nextafter(small[:, :2], np.float32(-np.inf))
    small[:, 2:] = np.nextafter(small[:, 2:], np.float32(np.inf))
    return small


def _vertices_in_discs(coords: tuple[Arr, Arr], n: int, q: Arr, discs: Arr) -> Arr:
    """Per pair ``k``: whether a vertex of footprint ``q[k]`` (of the ``n`` whose coordinates
    are ``coords``, from ``shapely.get_coordinates(..., return_index=True)``) lies inside the
    inner disc of ``discs[k]`` (a packed ``Discs`` row), by more than the margins. Such a
    vertex is a point of both footprints: they meet, and GEOS need not be asked. About a third
    of the pairs that reach GEOS on issue 5's data are decided so, for an eighth of its time.
    """
    xy, owner = coords
    count = np.bincount(owner, minlength=n)
    first = np.cumsum(count) - count
    # The radius, shrunk by the margins (squared below: rounding far smaller than them).
    radius = discs[:, 3] * (1 - DISC_REL) - DISC_ABS
    pair = np.flatnonzero(radius > 0)
    k = count[q[pair]]
    row = np.repeat(np.arange(len(pair), dtype=I8), k)
    vertex = np.arange(len(row), dtype=I8) + np.repeat(first[q[pair]] - (np.cumsum(k) - k), k)
    dx = xy[vertex, 0] * DISC_X_SCALE - discs[pair, 0][row]
    dy = xy[vertex, 1] - discs[pair, 1][row]
    inside = dx * dx + dy * dy < (radius[pair] ** 2)[row]
    found = np.zeros(len(q), dtype=bool)
    found[pair[row[inside]]] = True
    return found


def _octagons_apart(a: Arr, b: Arr) -> Arr:
    apart: Arr = (
        (a[:, 2] < b[:, 0]) | (b[:, 2] < a[:, 0]) | (a[:, 3] < b[:, 1]) | (b[:, 3] < a[:, 1])
    )
    return apart


class _Grid:
    """The static part: cell geometry and a CSR map from cell key to the slots registered there."""

    def __init__(self, box: Arr) -> None:
        """The cell geometry for the boxes ``box`` (the entries come with ``fill``)."""
        lows, highs = box[:, :4], box[:, 4:]
        self.origin = np.zeros(4)
        self.size = np.ones(4)
        self.n = np.ones(4, dtype=I8)
        for d in range(4):
            if not len(box):
                break
            o = float(lows[:, d].min())
            span = max(float(highs[:, d].max()) - o, 1e-9)
            c = CELL_FACTOR * float((highs[:, d] - lows[:, d]).mean())
            c = max(c, span / (MAX_CELLS_PER_DIM - 1), 1e-9)
            self.origin[d] = o
            self.size[d] = c
            self.n[d] = min(MAX_CELLS_PER_DIM, math.floor(span / c) + 1)
        self.origin8 = np.concatenate([self.origin, self.origin])
        self.size8 = np.concatenate([self.size, self.size])
        # Cell keys in 32 bits when they fit (halves the build's largest temporaries).
        self.key_type = np.int32 if int(np.prod(self.n)) < 2**31 else I8
        self.oversize: Arr = np.empty(0, I8)
        self.entries: Arr = np.empty(0, np.int32)
        self.ecode: Arr = np.empty(0, np.uint64)
        self.keys: Arr = np.empty(0, self.key_type)
        self.offsets: Arr = np.zeros(1, I8)
        #: Per cell key, the offset of its entries (``None``: too many cells, see ``lookup``).
        self.dense: Arr | None = None

    def fill(self, box: Arr, slots: Arr, slot_type: Any) -> None:
        """Register every slot in the cells its box covers (CSR: sorted keys, offsets)."""
        lows, highs = box[slots, :4], box[slots, 4:]
        lo, hi = self.cells(lows), self.cells(highs)
        counts = np.prod(hi - lo + 1, axis=1)
        big = counts > MAX_CELLS_PER_VOLUME
        self.oversize = slots[big]
        keep = ~big
        slots, lo, hi, counts = slots[keep], lo[keep], hi[keep], counts[keep]
        key_parts: list[Arr] = []
        slot_parts: list[Arr] = []
        for i in range(0, len(slots), BUILD_CHUNK):
            part = slice(i, i + BUILD_CHUNK)
            owner, keys = self.expand(lo[part], hi[part], counts[part])[:2]
            key_parts.append(keys.astype(self.key_type))
            slot_parts.append(slots[part][owner].astype(slot_type))
            del owner, keys
        order = np.argsort(_joined(key_parts, self.key_type), kind="stable")
        keys = _joined(key_parts, self.key_type)[order]
        self.entries = _joined(slot_parts, slot_type)[order]
        del order
        # Per entry, in entry order (a cell's candidates are read in sequence), computed from
        # the sorted keys in runs (no large temporaries): its box as seen from its cell and
        # whether the cell is its first along each dimension, in 8 bytes compared before any
        # float box.
        m = len(keys)
        self.ecode = np.empty(m, np.uint64)
        for i in range(0, m, BUILD_CHUNK):
            run = slice(i, i + BUILD_CHUNK)
            cells = self.decode(keys[run])
            b = box[self.entries[run]]
            first = self.first_bits(self.cells(b[:, :4]), cells)
            self.ecode[run] = self.quantize(self.norm(b), cells, first)
            del cells, b, first
        first = np.ones(len(keys), dtype=bool)
        first[1:] = keys[1:] != keys[:-1]
        starts = np.flatnonzero(first)
        self.keys = keys[starts]
        self.offsets = np.append(starts, len(keys)).astype(I8)
        n_cells = int(np.prod(self.n))
        if n_cells <= len(keys):  # at most 8 bytes an entry (which take 12 already)
            dense = np.zeros(n_cells + 1, I8)
            dense[self.keys.astype(I8) + 1] = np.diff(self.offsets)
            self.dense = np.cumsum(dense)

    def lookup(self, keys: Arr) -> tuple[Arr, Arr]:
        """(first entry, entry count) of the cells ``keys``; count 0 for an empty cell.

        Read from ``dense`` where the grid has no more cells than entries (issue 5's data:
        108,000 cells, 800,000 entries at 10^5 volumes): two reads a key instead of a binary
        search among the non-empty cells (3 ms of a 10^5 batch's 80,000 query cells).
        """
        if self.dense is not None:
            k = keys.astype(I8)
            start = self.dense[k]
            return start, self.dense[k + 1] - start
        pos = np.minimum(np.searchsorted(self.keys, keys), max(len(self.keys) - 1, 0))
        found = self.keys[pos] == keys if len(self.keys) else np.zeros(len(keys), dtype=bool)
        start = self.offsets[pos]
        return start, np.where(found, self.offsets[pos + 1] - start, 0)

    def norm(self, box: Arr) -> Arr:
        """Packed boxes in cell units from the origin."""
        out: Arr = (box - self.origin8) / self.size8
        return out

    def quantize(self, norm: Arr, cells: Arr, first: Arr) -> Arr:
        """Boxes in cell units (``norm``) as seen from cells (``cells``, k x 4; ``first``, the
        cells' first bits for the boxes): one uint64 each, read by ``_codes_pass``.

        Bytes 0-3 (one per dimension): where the box starts, 1 to ``CODE_LEVELS + 1`` when it
        starts in this cell (its first cell along that dimension), 0 when it starts before it.
        Bytes 4-7: where it ends, 1 to ``CODE_LEVELS + 1``, with the top bit set. Positions
        are the box's range across the cell in ``CODE_LEVELS`` steps, lower corners rounded
        down and upper ones up by a step more than the rounding could move them, clipped to the
        cell. Two boxes that overlap within a cell have codes that overlap there too (the map
        is monotonic, and 0 is below every code): comparing codes never loses a pair, only lets
        some more through."""
        cf = cells.astype(F8)
        out = np.empty((len(cells), 8), np.uint8)
        lo = np.clip(np.floor((norm[:, :4] - cf) * CODE_LEVELS) - 1, 0, CODE_LEVELS) + 1
        hi = np.clip(np.ceil((norm[:, 4:] - cf) * CODE_LEVELS) + 1, 0, CODE_LEVELS) + 1
        starts_here = (first[:, None] >> np.arange(4, dtype=np.uint8)) & 1
        out[:, :4] = np.where(starts_here == 1, lo, 0)
        out[:, 4:] = hi.astype(np.uint8) | np.uint8(0x80)
        codes: Arr = out.view(np.uint64).ravel()
        return codes

    def cells(self, points: Arr) -> Arr:
        """Cell coordinates (k x 4, clipped to the grid) of points (k x 4)."""
        i = np.floor((points - self.origin) / self.size)
        return np.clip(i, 0, self.n - 1).astype(I8)

    def decode(self, keys: Arr) -> Arr:
        """Cell coordinates (k x 4) of cell keys (the inverse of ``key``)."""
        k = keys.astype(I8)
        cells = np.empty((len(k), 4), I8)
        for d in (3, 2, 1):
            k, cells[:, d] = np.divmod(k, self.n[d])
        cells[:, 0] = k
        return cells

    @staticmethod
    def first_bits(first_cells: Arr, cells: Arr) -> Arr:
        """Bit ``d`` set where ``cells`` is, along dimension ``d``, the first (lowest) cell
        of a box whose first cell is ``first_cells``."""
        same = first_cells == cells
        bits: Arr = same[:, 0] | (same[:, 1] << 1) | (same[:, 2] << 2) | (same[:, 3] << 3)
        return bits.astype(np.uint8)

    def key(self, cells: Arr) -> Arr:
        n = self.n
        key: Arr = ((cells[:, 0] * n[1] + cells[:, 1]) * n[2] + cells[:, 2]) * n[3] + cells[:, 3]
        return key

    def expand(self, lo: Arr, hi: Arr, counts: Arr) -> tuple[Arr, Arr, Arr, Arr]:
        """(box index, cell key, first bits, cell) for every cell that each box, given by its
        cell range, covers. Bit ``d`` of ``first`` is set when the cell is the box's first along
        dimension ``d`` (the one holding its lower corner)."""
        total = int(counts.sum())
        owner = np.repeat(np.arange(len(counts), dtype=I8), counts)
        local = np.arange(total, dtype=I8) - np.repeat(np.cumsum(counts) - counts, counts)
        cells = np.empty((total, 4), I8)
        first = np.zeros(total, np.uint8)
        for d in (3, 2, 1, 0):
            w = (hi[:, d] - lo[:, d] + 1)[owner]
            off = local % w
            cells[:, d] = lo[owner, d] + off
            first |= (off == 0).astype(np.uint8) << np.uint8(d)
            local //= w
        return owner, self.key(cells), first, cells


def _joined(parts: list[Arr], dtype: Any) -> Arr:
    """``concatenate(parts)``; the parts are released (a second call gives the same array)."""
    if len(parts) != 1:
        whole = np.concatenate(parts) if parts else np.empty(0, dtype)
        parts[:] = [whole]
    return parts[0]


class _Columns:
    """Growable arrays of every slot (alive or not): boxes, discs, footprints and what makes a
    ``Volume`` again (id, owner code, version, shape, error), so that no Volume object is kept
    per indexed volume (a million of them cost hundreds of megabytes)."""

    _ARRAYS = ("box", "disc", "oct", "geoms", "ids", "owner", "version", "shape", "err")

    def __init__(self) -> None:
        self.n = 0
        self.box = np.empty((0, 8), F8)
        self.disc = np.empty((0, 4), F8)
        self.oct = np.empty((0, 4), np.float32)
        self.geoms = np.empty(0, object)
        self.ids = np.empty(0, object)
        self.owner = np.empty(0, np.int32)
        self.version = np.empty(0, np.int64)
        self.shape = np.empty(0, object)
        self.err = np.empty(0, F8)

    def reserve(self, cap: int) -> None:
        """Room for ``cap`` slots (bulk loading knows the count: no over-allocation)."""
        if cap > len(self.geoms):
            for name in self._ARRAYS:
                old = getattr(self, name)
                new = np.empty((cap, *old.shape[1:]), old.dtype)
                new[: self.n] = old[: self.n]
                setattr(self, name, new)

    def append(self, c: Columns, owner_codes: Arr, disc: Arr, octs: Arr) -> Arr:
        k = len(c.ids)
        need = self.n + k
        if need > len(self.geoms):
            self.reserve(max(need, 2 * len(self.geoms), 1024))
        s = slice(self.n, need)
        self.box[s] = c.box
        self.disc[s] = disc
        self.oct[s] = octs
        self.geoms[s] = c.geoms
        self.ids[s] = c.ids
        self.owner[s] = owner_codes
        self.version[s] = c.versions
        self.shape[s] = c.shapes
        self.err[s] = c.errors
        slots = np.arange(self.n, need, dtype=I8)
        self.n = need
        return slots

    def kill(self, slot: int) -> None:
        self.box[slot] = _EMPTY_BOX
        self.geoms[slot] = None

    def alive(self) -> Arr:
        live: Arr = self.box[: self.n, 0] <= self.box[: self.n, 4]
        return live

    def compact(self, keep: Arr) -> None:
        for name in self._ARRAYS:
            setattr(self, name, getattr(self, name)[keep].copy())
        self.n = len(keep)


_ALL4 = np.frombuffer(b"\x01\x01\x01\x01", dtype=np.uint32)[0]


def _overlap(a: Arr, q: Arr) -> Arr:
    """Rows of two packed box arrays that overlap (every dimension closed)."""
    # Four booleans of a row are four bytes: compare them all at once as one uint32.
    lo = np.ascontiguousarray(a[:, :4] <= q[:, 4:]).view(np.uint32).ravel()
    hi = np.ascontiguousarray(q[:, :4] <= a[:, 4:]).view(np.uint32).ravel()
    both: Arr = (lo == _ALL4) & (hi == _ALL4)
    return both


def _codes_pass(e: Arr, q: Arr) -> Arr:
    """Pairs of cell codes (``_Grid.quantize``; an entry's ``e`` and a query's ``q``, uint64
    arrays in the same cells) that may hold an overlapping pair of boxes to report here.

    Each pair is reported once: in the cell that holds the greatest lower corner of its two
    boxes (both boxes cover that point when they overlap). Along each dimension that cell is
    the first of one of the two boxes, as the cell of a coordinate grows with it: the pair is
    kept where, in every dimension, the entry or the query starts in the cell (a start code
    other than 0). And it is kept only where their codes overlap in every dimension.

    All four dimensions at once, as four byte lanes of a uint32 whose values fit in 7 bits:
    ``(0x80 | a) - b`` keeps the top bit of a lane exactly when ``a >= b`` (no lane borrows
    from the next, as ``0x80 | a > b``), and ``(a | b) + 0x7F`` sets it exactly when ``a`` or
    ``b`` is not 0 (no lane carries into the next, as the sum stays below 0x100). The end
    codes carry their top bit already.
    """
    e2, q2 = e.view(np.uint32).reshape(-1, 2), q.view(np.uint32).reshape(-1, 2)
    e_lo, e_hi, q_lo, q_hi = e2[:, 0], e2[:, 1], q2[:, 0], q2[:, 1]
    ok = (q_hi - e_lo) & (e_hi - q_lo)  # entry starts before the query ends, and conversely
    ok &= (e_lo | q_lo) + _LANE_LOW  # the entry or the query starts in this cell
    ok &= _LANE_TOP
    passed: Arr = ok == _LANE_TOP
    return passed


def _concat(results: Sequence[tuple[Arr, Arr]]) -> tuple[Arr, Arr]:
    if not results:
        return np.empty(0, I8), np.empty(0, I8)
    if len(results) == 1:
        return results[0]
    return np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results])


class _Helper:
    """A worker process forked from this one for batches. It inherits the index as it was at
    the fork (copy-on-write: nothing is copied or pickled), then answers requests (query boxes
    and footprints as WKB) with their pairs, until its pipe closes. It lives as long as the
    index does not change: a change makes the next batch fork a fresh one. Kept across batches,
    the pages it writes become its own once, not on every batch (a fork per batch paid a page
    copy for each page it touched, 0.2 s a batch at 10^6). Threads cannot share this work: the
    GEOS and numpy calls between them hold the GIL (two threads were slower than one)."""

    def __init__(self, serve: Callable[[bytes], bytes], generation: int) -> None:
        self.generation = generation
        # Requests and answers travel through memory shared with the helper, the pipes carry
        # only their sizes: streamed through a pipe (64 KiB at a time) a request of 2 MB took
        # about 35 hand-overs between the two processes, each a wait for a core on a loaded
        # machine (0.3 s of wall time for 40 ms of CPU at a load of 8).
        shm = mmap.mmap(-1, 2 * SHM_HALF)
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            for fd in (req_r, req_w, rep_r, rep_w):
                os.close(fd)
            shm.close()
            raise
        if pid == 0:  # pragma: no cover - the child (coverage does not follow it)
            try:
                os.close(req_w)
                os.close(rep_r)
                while (msg := _receive(req_r, shm, 0)) is not None:
                    _send(rep_w, shm, SHM_HALF, serve(msg))
            finally:
                os._exit(0)
        os.close(req_r)
        os.close(rep_w)
        self.pid, self.req, self.rep, self.shm = pid, req_w, rep_r, shm
        self.lock = threading.Lock()
        # Only the process that forked it may use or end it: a process forked from that one
        # later (multiprocessing, say) inherits this object and its descriptors, not the helper.
        self.owner = os.getpid()
        self._finalizer = weakref.finalize(self, _end_helper, pid, req_w, rep_r, shm, self.owner)

    def send(self, msg: bytes) -> None:
        """Send a request (OSError when the helper is gone)."""
        _send(self.req, self.shm, 0, msg)

    def answer(self) -> bytes | None:
        """The answer to the request sent; None when the helper is gone (then it is closed)."""
        try:
            got = _receive(self.rep, self.shm, SHM_HALF)
        except (OSError, ValueError):
            got = None
        if got is None:
            self.close()
        return got

    def close(self) -> None:
        self._finalizer()

    @property
    def alive(self) -> bool:
        return self._finalizer.alive and self.owner == os.getpid()


def _end_helper(pid: int, req: int, rep: int, shm: mmap.mmap, owner: int) -> None:
    if os.getpid() != owner:
        return  # a copy inherited by a later fork: the helper is its parent's
    shm.close()
    for fd in (req, rep):
        with contextlib.suppress(OSError):
            os.close(fd)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.waitpid(pid, 0)


def _send(fd: int, shm: mmap.mmap, at: int, data: bytes) -> None:
    """``data`` into ``shm`` at ``at`` and its size (negative) on the pipe ``fd``; data larger
    than ``SHM_HALF`` goes through the pipe itself."""
    if len(data) <= SHM_HALF:
        shm[at : at + len(data)] = data
        os.write(fd, struct.pack("<q", -1 - len(data)))  # 8 bytes: one atomic write
    else:
        _write_msg(fd, data)


def _receive(fd: int, shm: mmap.mmap, at: int) -> bytes | None:
    """What ``_send`` sent; None at the end of the pipe or on a bad size."""
    head = _read_exactly(fd, 8)
    if head is None:
        return None
    (k,) = struct.unpack("<q", head)
    if k >= 0:
        return _read_exactly(fd, k)
    size = -1 - k
    return bytes(shm[at : at + size]) if size <= SHM_HALF else None


def _write_msg(fd: int, data: bytes) -> None:
    view = memoryview(struct.pack("<q", len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def _read_exactly(fd: int, k: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < k:
        chunk = os.read(fd, min(k - len(buf), 1 << 20))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _pack_request(box: Arr, geoms: Arr | None, bounds: Arr | None, self_slots: Arr) -> bytes:
    """Queries for a helper: counts, boxes, own slots, bounds and footprints.

    Footprints of one plain ring (nearly all) travel as their coordinates and the offsets
    between them (``shapely.get_coordinates``), the others as WKB: at 10^5 volumes, packing the
    4,400 queries of a helper's share took 3.7 ms as WKB and 0.6 ms so, and the helper builds
    them in 1.7 ms instead of 3.3 ms (CPU, best of 20). The packing is paid before the helper
    can start."""
    n = len(box)
    parts = [
        struct.pack("<qqq", n, geoms is not None, bounds is not None),
        np.ascontiguousarray(box, dtype=F8).tobytes(),
        np.ascontiguousarray(self_slots, dtype=I8).tobytes(),
    ]
    if bounds is not None:
        parts.append(np.ascontiguousarray(bounds, dtype=F8).tobytes())
    if geoms is not None:
        ring = _plain_rings(geoms)
        xy, owner = shapely.get_coordinates(geoms[ring], return_index=True)
        ends = np.cumsum(np.bincount(owner, minlength=int(ring.sum())), dtype=I8)
        wkb = shapely.to_wkb(geoms[~ring]).tolist()
        wkb_ends = np.cumsum([len(w) for w in wkb], dtype=I8)
        parts += [
            struct.pack("<q", len(xy)),
            ring.astype(I8).tobytes(),
            ends.tobytes(),
            np.ascontiguousarray(xy, dtype=F8).tobytes(),
            wkb_ends.tobytes(),
            b"".join(wkb),
        ]
    return b"".join(parts)


def _plain_rings(geoms: Arr) -> Arr:
    """Which footprints are polygons of one ring, 2D, not empty: those the coordinates and
    their offsets rebuild exactly (``shapely.from_ragged_array``)."""
    plain: Arr = (
        (shapely.get_type_id(geoms) == 3)
        & (shapely.get_num_interior_rings(geoms) == 0)
        & ~shapely.has_z(geoms)
        & (shapely.get_num_coordinates(geoms) >= 4)
    )
    return plain


def _unpack_request(msg: bytes) -> tuple[Arr, Arr | None, Arr | None, Arr]:
    n, has_geoms, has_bounds = struct.unpack_from("<qqq", msg)
    at = 24
    box = np.frombuffer(msg, F8, n * 8, at).reshape(n, 8)
    at += 64 * n
    self_slots = np.frombuffer(msg, I8, n, at)
    at += 8 * n
    bounds = None
    if has_bounds:
        bounds = np.frombuffer(msg, F8, n * 4, at).reshape(n, 4)
        at += 32 * n
    geoms = None
    if has_geoms:
        (n_xy,) = struct.unpack_from("<q", msg, at)
        at += 8
        ring = np.frombuffer(msg, I8, n, at).astype(bool)
        at += 8 * n
        k = int(ring.sum())
        ends = np.frombuffer(msg, I8, k, at)
        at += 8 * k
        xy = np.frombuffer(msg, F8, 2 * n_xy, at).reshape(n_xy, 2)
        at += 16 * n_xy
        geoms = np.empty(n, object)
        geoms[ring] = shapely.from_ragged_array(
            shapely.GeometryType.POLYGON,
            xy,
            (np.concatenate(([0], ends)), np.arange(k + 1, dtype=I8)),
        )
        m = n - k
        cuts = (np.concatenate(([0], np.frombuffer(msg, I8, m, at))) + at + 8 * m).tolist()
        wkb = np.empty(m, object)
        wkb[:] = [msg[a:b] for a, b in itertools.pairwise(cuts)]
        geoms[~ring] = shapely.from_wkb(wkb)
    return box, geoms, bounds, self_slots


def _pack_pairs(qi: Arr, slots: Arr) -> bytes:
    return (
        struct.pack("<q", len(qi))
        + np.ascontiguousarray(qi, dtype=I8).tobytes()
        + np.ascontiguousarray(slots, dtype=I8).tobytes()
    )


def _unpack_pairs(data: bytes) -> tuple[Arr, Arr] | None:
    if len(data) < 8:
        return None
    (k,) = struct.unpack_from("<q", data)
    if k < 0 or len(data) != 8 + 16 * k:
        return None
    return np.frombuffer(data, I8, k, 8).copy(), np.frombuffer(data, I8, k, 8 + 8 * k).copy()


class _SlotMap:
    """``(owner, id) -> slot`` as one ``id -> slot`` dict per owner: no key tuple per volume
    (64 bytes each, 61 MiB at 10^6) and bulk updates in C."""

    def __init__(self) -> None:
        self.by_owner: dict[str, dict[str, int]] = {}

    @staticmethod
    def of(owners: list[str], codes: Arr, ids: Arr) -> _SlotMap:
        """The map of slots ``0..n-1`` with owner codes ``codes`` (into ``owners``), ``ids``."""
        out = _SlotMap()
        slots = np.arange(len(codes), dtype=I8)
        for code in np.unique(codes).tolist():
            mine = codes == code
            out.by_owner[owners[code]] = dict(
                zip(ids[mine].tolist(), slots[mine].tolist(), strict=True)
            )
        return out

    def __len__(self) -> int:
        return sum(len(d) for d in self.by_owner.values())

    def __bool__(self) -> bool:
        return any(self.by_owner.values())

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, tuple) or len(key) != 2:
            return False
        d = self.by_owner.get(key[0])
        return d is not None and key[1] in d

    def get(self, key: tuple[str, str], default: int | None = None) -> int | None:
        d = self.by_owner.get(key[0])
        return default if d is None else d.get(key[1], default)

    def pop(self, key: tuple[str, str], default: int | None = None) -> int | None:
        d = self.by_owner.get(key[0])
        return default if d is None else d.pop(key[1], default)

    def values(self) -> list[int]:
        return [s for d in self.by_owner.values() for s in d.values()]

    def present(self, owners: list[str], ids: list[str]) -> list[tuple[str, str]]:
        """Those of the keys ``zip(owners, ids)`` in the map (set operations in C)."""
        out: list[tuple[str, str]] = []
        distinct = set(owners)
        for owner in distinct:
            d = self.by_owner.get(owner)
            if d:
                mine = (
                    ids
                    if len(distinct) == 1
                    else [i for o, i in zip(owners, ids, strict=True) if o == owner]
                )
                out += [(owner, i) for i in d.keys() & set(mine)]
        return out

    def update(self, owners: list[str], ids: list[str], slots: list[int]) -> None:
        if len(set(owners)) == 1:
            self.by_owner.setdefault(owners[0], {}).update(zip(ids, slots, strict=True))
            return
        for owner, vid, slot in zip(owners, ids, slots, strict=True):
            self.by_owner.setdefault(owner, {})[vid] = slot


class VolumeIndex:
    """All active volumes, by ``(owner, id)``, with exact 4D pair queries.

    One writer at a time (the registry); a query may use worker threads internally.
    """

    def __init__(self, *, workers: int = 2) -> None:
        self.workers = max(1, workers)
        self._cols = _Columns()
        self._slot = _SlotMap()
        self._owners: list[str] = []
        self._owner_code: dict[str, int] = {}
        self._grid: _Grid | None = None
        self._built_n = 0  # slots below this are in the grid (or its oversize list)
        self._dead = 0
        # Helper processes for batches, valid while the index is at their generation.
        self._generation = 0
        self._helpers: list[_Helper] = []
        self._helpers_lock = threading.Lock()

    # ---- writes --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._slot)

    def __contains__(self, key: object) -> bool:
        return key in self._slot

    def add(self, volumes: Iterable[Volume], *, rebuild: bool = True) -> None:
        """Add volumes; a volume with the key of one already present replaces it.

        With ``rebuild=False`` (bulk loading) the grid is left for an explicit ``rebuild()``.
        """
        vols = list(volumes)
        if vols:
            self.add_columns(Columns.of(vols), rebuild=rebuild)

    def add_columns(self, c: Columns, *, rebuild: bool = True) -> None:
        """``add`` for volumes given column-wise (bulk loading from the store)."""
        keys = list(zip(c.owners, c.ids, strict=True))
        last = dict(zip(keys, range(len(keys)), strict=True))
        if len(last) < len(keys):
            c = c.take(sorted(last.values()))
            keys = list(zip(c.owners, c.ids, strict=True))
        self._generation += 1
        for key in self._slot.present(c.owners, c.ids):
            self._drop(key)
        codes = np.fromiter((self._code(o) for o in c.owners), np.int32, len(keys))
        bounds = np.column_stack((c.box[:, 0], c.box[:, 1], c.box[:, 4], c.box[:, 5]))
        disc, octs = self._discs(c.geoms, bounds)
        slots = self._cols.append(c, codes, disc, octs)
        self._slot.update(c.owners, c.ids, slots.tolist())
        if rebuild and self._cols.n - self._built_n > PENDING_MAX:
            self.rebuild()

    def reserve(self, count: int) -> None:
        """Make room for ``count`` volumes in all (before a bulk load of a known size)."""
        self._cols.reserve(count)

    def _code(self, owner: str) -> int:
        code = self._owner_code.get(owner)
        if code is None:
            code = self._owner_code[owner] = len(self._owners)
            self._owners.append(owner)
        return code

    def _discs(self, geoms: Arr, bounds: Arr) -> tuple[Arr, Arr]:
        """Packed discs and float32 octagons of many footprints, on the worker threads."""
        step = 25_000

        def one(p: slice) -> tuple[Arr, Arr]:
            disc, octs = discs_and_octagons(geoms[p], bounds[p])
            return disc, _float32_outwards(octs)

        parts = [slice(i, i + step) for i in range(0, len(geoms), step)]
        if self.workers == 1 or len(parts) <= 1:
            done = [one(p) for p in parts]
        else:
            with ThreadPoolExecutor(self.workers) as pool:
                done = list(pool.map(one, parts))
        if not done:
            return np.empty((0, 4), F8), np.empty((0, 4), np.float32)
        return np.concatenate([d[0] for d in done]), np.concatenate([d[1] for d in done])

    def remove(self, key: tuple[str, str]) -> bool:
        """Remove the volume with ``key``; False when there was none."""
        return self._drop(key)

    def _drop(self, key: tuple[str, str]) -> bool:
        slot = self._slot.pop(key, None)
        if slot is None:
            return False
        self._generation += 1
        self._cols.kill(slot)
        self._dead += 1
        return True

    def expire(self, now_us: int) -> list[Volume]:
        """Remove and return every volume whose time window has ended at ``now_us``."""
        n = self._cols.n
        # Closed end is end - 1: ended when end <= now, that is end - 1 < now.
        ended = np.flatnonzero(self._cols.alive() & (self._cols.box[:n, 6] < now_us))
        gone = [self.volume(s) for s in ended.tolist()]
        for v in gone:
            self._drop(v.key)
        return gone

    def rebuild(self) -> None:
        """Rebuild the grid over every live volume.

        Removed volumes are compacted away, and the slots are renumbered in the order of their
        lower corners' cells, so that the volumes of one cell sit close together in memory.
        """
        cols = self._cols
        self._generation += 1
        keep = np.flatnonzero(cols.alive())
        if not len(keep):
            self._grid = None
            cols.compact(keep)
            self._slot, self._dead, self._built_n = _SlotMap(), 0, 0
            return
        grid = _Grid(cols.box[keep])
        keep = keep[np.argsort(grid.key(grid.cells(cols.box[keep, :4])), kind="stable")]
        cols.compact(keep)
        del keep
        self._slot = _SlotMap()  # free the old map before building the new one (peak memory)
        self._slot = _SlotMap.of(self._owners, cols.owner[: cols.n], cols.ids[: cols.n])
        self._dead = 0
        slot_type = np.int32 if cols.n < 2**31 else I8
        grid.fill(cols.box, np.arange(cols.n, dtype=I8), slot_type)
        self._grid = grid
        self._built_n = cols.n

    def volumes(self) -> list[Volume]:
        return [self.volume(s) for s in sorted(self._slot.values())]

    def get(self, key: tuple[str, str]) -> Volume | None:
        slot = self._slot.get(key)
        return None if slot is None else self.volume(slot)

    def volume(self, slot: int) -> Volume:
        """The volume in ``slot`` (made again from the columns)."""
        cols = self._cols
        footprint = cols.geoms[slot]
        if footprint is None:
            raise KeyError(slot)
        b = cols.box[slot]
        shape = cols.shape[slot]
        return Volume(
            id=cols.ids[slot],
            footprint=footprint,
            altitude_lower=float(b[3]),
            altitude_upper=float(b[7]),
            time_start_us=int(b[2]),
            time_end_us=int(b[6]) + 1,
            shape=POLYGON_SHAPE if shape is None else shape,
            owner=self._owners[cols.owner[slot]],
            version=int(cols.version[slot]),
            max_error_m=float(cols.err[slot]),
        )

    # ---- queries -------------------------------------------------------------------------------

    def self_slots(self, queries: Sequence[Volume]) -> Arr:
        """Each query's own slot (the indexed volume of its key), -1 where it has none."""
        # The owners' maps read directly: no key tuple or method call per query (paid before
        # a helper starts; 15,000 queries: 1.9 ms of CPU through ``_SlotMap.get``, 0.9 here).
        by_owner = self._slot.by_owner
        none: dict[str, int] = {}
        return np.fromiter(
            (by_owner.get(v.owner, none).get(v.id, -1) for v in queries), I8, len(queries)
        )

    def pairs(self, queries: Sequence[Volume]) -> tuple[Arr, Arr]:
        """Every (query index, slot) whose volumes conflict, excluding a query's own key.

        Conflict: footprints intersect (touching counts), altitude bands overlap (closed), time
        windows overlap (half-open).
        """
        if not queries:
            return np.empty(0, I8), np.empty(0, I8)
        self.settle_for_batch(len(queries))

        def part(a: int, b: int) -> _Queries:
            # Made share by share: the helpers' first, so that they start sooner.
            qs = queries[a:b]
            geoms = np.empty(len(qs), object)
            geoms[:] = [v.footprint for v in qs]
            bounds = shapely.bounds(geoms).reshape(-1, 4)
            return pack_boxes(qs, bounds), geoms, bounds, self.self_slots(qs)

        return self._pairs_parts(len(queries), part)

    def settle_for_batch(self, n: int) -> None:
        """Rebuild the grid before a batch of ``n`` queries when many volumes are pending (the
        batch pays for the rebuild; single queries scan pending ones). A rebuild renumbers the
        slots: call it before taking the queries' ``self_slots``."""
        if self._cols.n - self._built_n > PENDING_MAX // 4 and n > 64:
            self.rebuild()

    def pairs_boxes(
        self, box: Arr, geoms: Arr | None, self_slots: Arr, *, bounds: Arr | None = None
    ) -> tuple[Arr, Arr]:
        """Pairs of packed query boxes and indexed slots; exact when footprints (``geoms``,
        with their ``bounds``) are given, box overlaps only otherwise. ``self_slots`` must be
        taken after ``settle_for_batch``."""

        def part(a: int, b: int) -> _Queries:
            return (
                box[a:b],
                None if geoms is None else geoms[a:b],
                None if bounds is None else bounds[a:b],
                self_slots[a:b],
            )

        return self._pairs_parts(len(box), part)

    def _pairs_parts(self, n: int, part: Callable[[int, int], _Queries]) -> tuple[Arr, Arr]:
        """The pairs of ``n`` queries, given share by share by ``part(a, b)`` (queries ``a``
        to ``b``), here and in the helper processes."""
        helpers = self._helpers_for(n)
        if not helpers:
            return self._pairs_range(*part(0, n))
        # Shares of the queries: the first here, one for each helper, asked first.
        # This process takes a larger share: a helper starts only once the queries are packed
        # for it, and parses their footprints first.
        own = round(n * (1 + OWN_SHARE_EXTRA) / (len(helpers) + 1))
        cuts = [0, own] + [own + (n - own) * k // len(helpers) for k in range(1, len(helpers) + 1)]
        pending: list[tuple[_Helper, int, int]] = []
        results: list[tuple[Arr, Arr]] = []
        try:
            for h, (a, b) in zip(helpers, itertools.pairwise(cuts[1:]), strict=True):
                try:
                    h.send(_pack_request(*part(a, b)))
                except OSError:
                    h.close()
                pending.append((h, a, b))
            results.append(self._pairs_range(*part(0, cuts[1])))
            while pending:
                h, a, b = pending.pop(0)
                data = h.answer() if h.alive else None
                got = None if data is None else _unpack_pairs(data)
                if got is None:  # the helper failed: its share is computed here
                    h.close()
                    got = self._pairs_range(*part(a, b))
                results.append((got[0] + a, got[1]))
        finally:
            for h, _, _ in pending:
                h.close()  # its answer was never read: it is out of step
            for h in helpers:
                h.lock.release()
        return _concat(results)

    def _pairs_range(
        self, box: Arr, geoms: Arr | None, bounds: Arr | None, self_slots: Arr
    ) -> tuple[Arr, Arr]:
        """The pairs of the queries ``box`` (with their ``geoms``, ...), chunk by chunk."""
        n = len(box)
        return _concat(
            [
                self._pairs_chunk(
                    box, geoms, bounds, self_slots, np.arange(i, min(i + CHUNK, n), dtype=I8)
                )
                for i in range(0, n, CHUNK)
            ]
        )

    def _serve(self, msg: bytes) -> bytes:
        """A helper's answer to one request (run in the helper process)."""
        box, geoms, bounds, self_slots = _unpack_request(msg)
        return _pack_pairs(*self._pairs_range(box, geoms, bounds, self_slots))

    def helper_pids(self) -> list[int]:
        """Process ids of the live helper processes (for measuring their CPU time)."""
        return [h.pid for h in self._helpers if h.alive]

    def close(self) -> None:
        """End the helper processes now (they also end when the index is collected)."""
        for h in self._helpers:
            h.close()
        self._helpers = []

    def _helpers_for(self, n: int) -> list[_Helper]:
        """Helpers for a batch of ``n`` queries, locked for it (none for small batches, with one
        worker, where fork is not native, or while another thread is using them)."""
        want = min(self.workers, n // CHUNK + 1) - 1
        if want < 1 or n < FORK_MIN_QUERIES or not _CAN_FORK:
            return []
        if not self._helpers_lock.acquire(blocking=False):
            return []
        try:
            helpers = [h for h in self._helpers if h.alive and h.generation == self._generation]
            for h in self._helpers:
                if h not in helpers:
                    h.close()
            while len(helpers) < want:
                try:
                    helpers.append(_Helper(self._serve, self._generation))
                except OSError:
                    break
            self._helpers = helpers
            taken = [h for h in helpers[:want] if h.lock.acquire(blocking=False)]
        finally:
            self._helpers_lock.release()
        return taken

    def _pairs_chunk(
        self, box: Arr, geoms: Arr | None, bounds: Arr | None, self_slots: Arr, idx: Arr
    ) -> tuple[Arr, Arr]:
        cols = self._cols
        parts_q: list[Arr] = []
        parts_s: list[Arr] = []
        grid = self._grid
        if grid is not None and len(grid.keys):
            if len(idx) == 1:
                slots = self._grid_candidates_one(grid, box[int(idx[0])])
                qi = np.full(len(slots), idx[0], dtype=I8)
            else:
                qi, slots = self._grid_candidates(grid, box, idx)
            parts_q.append(qi)
            parts_s.append(slots)
        # Linear parts: the grid's oversize volumes and the pending ones, against every query.
        linear = np.arange(self._built_n, cols.n, dtype=I8)
        if grid is not None and len(grid.oversize):
            linear = np.concatenate([grid.oversize, linear])
        if len(linear):
            qi = np.repeat(idx, len(linear))
            slots = np.tile(linear, len(idx))
            m = _overlap(cols.box[slots], box[qi])
            parts_q.append(qi[m])
            parts_s.append(slots[m])
        if not parts_q:
            return np.empty(0, I8), np.empty(0, I8)
        qi = np.concatenate(parts_q) if len(parts_q) > 1 else parts_q[0]
        slots = np.concatenate(parts_s) if len(parts_s) > 1 else parts_s[0]
        m = slots != self_slots[qi]
        qi, slots = qi[m], slots[m]
        if geoms is None or not len(qi):
            return qi, slots
        sure = np.zeros(len(qi), dtype=bool)
        test = None
        if bounds is not None and len(qi) >= DISC_MIN_PAIRS:
            # Discs of this chunk's queries (worth it only with enough pairs to decide).
            first = int(idx[0])
            coords = shapely.get_coordinates(geoms[idx], return_index=True)
            disc, qoct = discs_and_octagons(geoms[idx], bounds[idx], coords)
            qd, ad = disc[qi - first], cols.disc[slots]
            dist = np.hypot(qd[:, 0] - ad[:, 0], qd[:, 1] - ad[:, 1])
            near = dist <= (qd[:, 2] + ad[:, 2]) * (1 + DISC_REL) + DISC_ABS
            near &= ~_octagons_apart(qoct[qi - first], cols.oct[slots])
            qi, slots, dist, qd, ad = qi[near], slots[near], dist[near], qd[near], ad[near]
            sure = (qd[:, 3] > 0) & (ad[:, 3] > 0)
            sure &= dist < (qd[:, 3] + ad[:, 3]) * (1 - DISC_REL) - DISC_ABS
            test = np.flatnonzero(~sure)
            if len(test) >= VERTEX_MIN_TESTS:
                met = _vertices_in_discs(coords, len(idx), qi[test] - first, ad[test])
                sure[test[met]] = True
                test = test[~met]
        if test is None:
            test = np.flatnonzero(~sure)
        # Only a footprint tested against many is prepared (GEOS indexes its edges): for
        # issue 5's footprints, a few tens of vertices, a test takes the same time (about
        # 2 us) prepared or not, and preparing costs about as much again (a fresh batch of
        # 4,400 queries: 48 -> 43 ms of CPU without). A large footprint gains much (2,000
        # vertices: 7.2 us a test plain, 0.26 prepared), and is tested against many.
        if len(idx) == 1:  # a single query: the same, in fewer numpy calls
            if len(test) >= PREPARE_MIN_TESTS:
                shapely.prepare(geoms[idx])
        elif len(test) >= PREPARE_MIN_TESTS:
            tests = np.bincount(qi[test], minlength=len(geoms))[idx]
            shapely.prepare(geoms[idx[tests >= PREPARE_MIN_TESTS]])
        hit = shapely.intersects(geoms[qi[test]], cols.geoms[slots[test]])
        sure[test[hit]] = True
        return qi[sure], slots[sure]

    def _grid_candidates_one(self, grid: _Grid, qbox: Arr) -> Arr:
        """The slots whose boxes overlap one query box (``qbox``, a packed row).

        The same set as ``_grid_candidates`` for a chunk of one, in fewer numpy calls (a single
        query's cost is their fixed overhead, not the data): the covered cells' keys from an
        outer sum, their entries concatenated, duplicates dropped after a sort instead of
        the greatest-lower-corner rule, and the exact box test in float64 directly.
        """
        cells = grid.cells(qbox.reshape(2, 4))
        lo, hi, n = cells[0], cells[1], grid.n
        if int(np.prod(hi - lo + 1)) > MAX_CELLS_PER_VOLUME:
            return self._grid_candidates(grid, qbox.reshape(1, 8), np.zeros(1, I8))[1]
        keys = np.arange(lo[0], hi[0] + 1, dtype=I8)
        for d in (1, 2, 3):
            keys = (keys[:, None] * n[d] + np.arange(lo[d], hi[d] + 1, dtype=I8)).ravel()
        keys = keys.astype(grid.key_type)
        start, count = grid.lookup(keys)
        start = start.tolist()
        runs = [grid.entries[a : a + k] for a, k in zip(start, count.tolist(), strict=True) if k]
        if not runs:
            return np.empty(0, I8)
        slots = np.concatenate(runs).astype(I8)
        slots.sort()
        if len(slots) > 1:
            slots = slots[np.concatenate(([True], slots[1:] != slots[:-1]))]
        m = _overlap(self._cols.box[slots], qbox.reshape(1, 8))
        found: Arr = slots[m]
        return found

    def _grid_candidates(self, grid: _Grid, box: Arr, idx: Arr) -> tuple[Arr, Arr]:
        qbox = box[idx]
        lo, hi = grid.cells(qbox[:, :4]), grid.cells(qbox[:, 4:])
        counts = np.prod(hi - lo + 1, axis=1)
        owner, keys, qfirst, qcells = grid.expand(lo, hi, counts)
        keys = keys.astype(grid.key_type)
        start, n_in = grid.lookup(keys)
        found = n_in > 0
        owner, qfirst, start, n_in = owner[found], qfirst[found], start[found], n_in[found]
        qcode = grid.quantize(grid.norm(qbox)[owner], qcells[found], qfirst)
        total = int(n_in.sum())
        entry = np.arange(total, dtype=I8) + np.repeat(start - (np.cumsum(n_in) - n_in), n_in)
        qcell = np.repeat(np.arange(len(start), dtype=I8), n_in)
        # Prefilter on the codes (one read of 8 bytes an entry, mostly in sequence): drops
        # the duplicates and most pairs whose boxes are apart (``_codes_pass``), then exactly.
        m = _codes_pass(grid.ecode[entry], qcode[qcell])
        entry, qcell = entry[m], qcell[m]
        qrow = owner[qcell]
        slots = grid.entries[entry].astype(I8)
        m = _overlap(self._cols.box[slots], qbox[qrow])
        return idx[qrow[m]], slots[m]
