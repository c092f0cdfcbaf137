"""The in-memory 4D index: a uniform grid over (lon, lat, time, altitude), pruned with numpy.

How a query runs (all steps vectorized over a chunk of queries; chunks run on ``workers`` threads,
numpy and shapely release the GIL):

1. Cells. Each indexed volume is registered in every grid cell its 4D bounding box covers; cell
   sizes are the mean extents of the volumes in each dimension, so a volume covers about two
   cells per dimension. Volumes that would cover more than ``MAX_CELLS_PER_VOLUME`` cells live in
   a small ``oversize`` list that every query scans.
2. Candidates. A query box visits its cells; the entries of those cells are its candidates.
3. 4D box filter, exact: footprint boxes closed, altitude bands closed, time windows half-open.
4. Duplicates: a pair met in several cells is kept only in the cell holding the greatest of its
   two lower corners (both boxes cover that point), so each pair is reported once.
5. Exact footprint test: ``shapely.intersects`` (touching counts) with the query prepared.

Volumes added after the last build wait in a ``pending`` list that queries scan directly; the grid
is rebuilt when that list grows past ``PENDING_MAX``. Removed and expired volumes are masked out
and compacted away at the next rebuild.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

from hotline.deconfliction._volume import Volume

#: Volumes added since the last build that queries scan one by one before the grid is rebuilt.
PENDING_MAX = 2_048
#: A volume whose box covers more grid cells than this is kept in the oversize list instead.
MAX_CELLS_PER_VOLUME = 256
#: Cells per dimension at most (keeps cell keys inside int64 and the grid small).
MAX_CELLS_PER_DIM = 4_096
#: Queries handled per vectorized chunk (bounds the temporary arrays: ~100 MB at 10^6 volumes).
CHUNK = 256

F8 = np.dtype(np.float64)
I8 = np.dtype(np.int64)
Arr = np.ndarray[Any, Any]


@dataclass(frozen=True, slots=True)
class Boxes:
    """4D boxes of a set of query volumes, column-wise."""

    xmin: Arr
    ymin: Arr
    xmax: Arr
    ymax: Arr
    ts: Arr  # int64 microseconds, inclusive
    te: Arr  # int64 microseconds, exclusive
    alo: Arr
    ahi: Arr

    @staticmethod
    def of(volumes: Sequence[Volume]) -> Boxes:
        b = shapely.bounds(np.array([v.footprint for v in volumes], dtype=object))
        b = b.reshape(-1, 4)
        return Boxes(
            xmin=b[:, 0].copy(),
            ymin=b[:, 1].copy(),
            xmax=b[:, 2].copy(),
            ymax=b[:, 3].copy(),
            ts=np.fromiter((v.time_start_us for v in volumes), I8, len(volumes)),
            te=np.fromiter((v.time_end_us for v in volumes), I8, len(volumes)),
            alo=np.fromiter((v.altitude_lower for v in volumes), F8, len(volumes)),
            ahi=np.fromiter((v.altitude_upper for v in volumes), F8, len(volumes)),
        )

    def take(self, idx: Arr) -> Boxes:
        return Boxes(*(getattr(self, f)[idx] for f in self.__slots__))

    def expanded(self, dx: Arr, dy: Arr, dalt: float) -> Boxes:
        return Boxes(
            self.xmin - dx,
            self.ymin - dy,
            self.xmax + dx,
            self.ymax + dy,
            self.ts,
            self.te,
            self.alo - dalt,
            self.ahi + dalt,
        )


class _Grid:
    """The static part: cell geometry and a CSR map from cell key to the slots registered there."""

    def __init__(self, cols: _Columns, slots: Arr) -> None:
        lows = [cols.xmin[slots], cols.ymin[slots], cols.ts[slots].astype(F8), cols.alo[slots]]
        highs = [cols.xmax[slots], cols.ymax[slots], cols.te[slots].astype(F8), cols.ahi[slots]]
        self.origin: list[float] = []
        self.size: list[float] = []
        self.n: list[int] = []
        for lo, hi in zip(lows, highs, strict=True):
            o = float(lo.min()) if len(lo) else 0.0
            top = float(hi.max()) if len(hi) else 1.0
            span = max(top - o, 1e-9)
            c = float((hi - lo).mean()) if len(lo) else 1.0
            c = max(c, span / (MAX_CELLS_PER_DIM - 1), 1e-9)
            self.origin.append(o)
            self.size.append(c)
            self.n.append(min(MAX_CELLS_PER_DIM, math.floor(span / c) + 1))
        ranges = self.ranges(lows, highs)
        counts = np.ones(len(slots), dtype=I8)
        for lo_i, hi_i in ranges:
            counts *= hi_i - lo_i + 1
        big = counts > MAX_CELLS_PER_VOLUME
        self.oversize: Arr = slots[big]
        keep = ~big
        slots = slots[keep]
        ranges = [(lo_i[keep], hi_i[keep]) for lo_i, hi_i in ranges]
        owner, keys = self.expand(ranges, counts[keep])
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        self.entries: Arr = slots[owner[order]].astype(np.int32 if len(cols.alive) < 2**31 else I8)
        first = np.ones(len(keys), dtype=bool)
        first[1:] = keys[1:] != keys[:-1]
        starts = np.flatnonzero(first)
        self.keys: Arr = keys[starts]
        self.offsets: Arr = np.append(starts, len(keys)).astype(I8)

    def cell(self, d: int, v: Arr) -> Arr:
        i = np.floor((v - self.origin[d]) / self.size[d])
        return np.clip(i, 0, self.n[d] - 1).astype(I8)

    def ranges(self, lows: list[Arr], highs: list[Arr]) -> list[tuple[Arr, Arr]]:
        return [(self.cell(d, lows[d]), self.cell(d, highs[d])) for d in range(4)]

    def key(self, ix: Arr, iy: Arr, it: Arr, ia: Arr) -> Arr:
        return ((ix * self.n[1] + iy) * self.n[2] + it) * self.n[3] + ia

    def expand(self, ranges: list[tuple[Arr, Arr]], counts: Arr) -> tuple[Arr, Arr]:
        """For boxes given by cell ranges: (box index, cell key) for every cell each box covers."""
        total = int(counts.sum())
        owner = np.repeat(np.arange(len(counts), dtype=I8), counts)
        local = np.arange(total, dtype=I8) - np.repeat(np.cumsum(counts) - counts, counts)
        idx = []
        for lo, hi in reversed(ranges):
            w = (hi - lo + 1)[owner]
            idx.append(lo[owner] + local % w)
            local //= w
        ia, it, iy, ix = idx
        return owner, self.key(ix, iy, it, ia)


class _Columns:
    """Growable column arrays of every slot (alive or not)."""

    def __init__(self) -> None:
        self.n = 0
        cap = 0
        self.xmin = np.empty(cap, F8)
        self.ymin = np.empty(cap, F8)
        self.xmax = np.empty(cap, F8)
        self.ymax = np.empty(cap, F8)
        self.ts = np.empty(cap, I8)
        self.te = np.empty(cap, I8)
        self.alo = np.empty(cap, F8)
        self.ahi = np.empty(cap, F8)
        self.alive = np.empty(cap, bool)
        self.geoms = np.empty(cap, object)

    _NAMES = ("xmin", "ymin", "xmax", "ymax", "ts", "te", "alo", "ahi", "alive", "geoms")

    def append(self, boxes: Boxes, geoms: Arr) -> Arr:
        k = len(geoms)
        need = self.n + k
        if need > len(self.alive):
            cap = max(need, 2 * len(self.alive), 1024)
            for name in self._NAMES:
                old = getattr(self, name)
                new = np.empty(cap, old.dtype)
                new[: self.n] = old[: self.n]
                setattr(self, name, new)
        s = slice(self.n, need)
        for name in ("xmin", "ymin", "xmax", "ymax", "ts", "te", "alo", "ahi"):
            getattr(self, name)[s] = getattr(boxes, name)
        self.alive[s] = True
        self.geoms[s] = geoms
        slots = np.arange(self.n, need, dtype=I8)
        self.n = need
        return slots

    def compact(self, keep: Arr) -> None:
        for name in self._NAMES:
            setattr(self, name, getattr(self, name)[keep].copy())
        self.n = len(keep)


def _box_filter(cols: _Columns, q: Boxes, qi: Arr, slots: Arr) -> Arr:
    """Mask of the (query, slot) pairs whose 4D boxes overlap, with hotline's semantics."""
    m = cols.ts[slots] < q.te[qi]
    m &= q.ts[qi] < cols.te[slots]
    m &= cols.alo[slots] <= q.ahi[qi]
    m &= q.alo[qi] <= cols.ahi[slots]
    m &= cols.xmin[slots] <= q.xmax[qi]
    m &= q.xmin[qi] <= cols.xmax[slots]
    m &= cols.ymin[slots] <= q.ymax[qi]
    m &= q.ymin[qi] <= cols.ymax[slots]
    m &= cols.alive[slots]
    return m


def _compress(m: Arr, *arrays: Arr) -> list[Arr]:
    return [a[m] for a in arrays]


class VolumeIndex:
    """All active volumes, by ``(owner, id)``, with exact 4D pair queries.

    Not thread-safe for writers: one writer (the registry) at a time; queries use worker threads.
    """

    def __init__(self, *, workers: int = 2) -> None:
        self.workers = max(1, workers)
        self._cols = _Columns()
        self._volumes: list[Volume | None] = []
        self._slot: dict[tuple[str, str], int] = {}
        self._grid: _Grid | None = None
        self._built_n = 0  # slots below this are in the grid (or its oversize list)
        self._dead = 0

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
        if not vols:
            return
        last: dict[tuple[str, str], int] = {}
        for i, v in enumerate(vols):
            last[v.key] = i
        vols = [vols[i] for i in sorted(last.values())]
        for v in vols:
            self._drop(v.key)
        geoms = np.empty(len(vols), object)
        geoms[:] = [v.footprint for v in vols]
        slots = self._cols.append(Boxes.of(vols), geoms)
        self._volumes.extend(vols)
        for v, s in zip(vols, slots.tolist(), strict=True):
            self._slot[v.key] = s
        if rebuild and self._cols.n - self._built_n > PENDING_MAX:
            self.rebuild()

    def remove(self, key: tuple[str, str]) -> bool:
        """Remove the volume with ``key``; False when there was none."""
        return self._drop(key)

    def _drop(self, key: tuple[str, str]) -> bool:
        slot = self._slot.pop(key, None)
        if slot is None:
            return False
        self._cols.alive[slot] = False
        self._volumes[slot] = None
        self._dead += 1
        return True

    def expire(self, now_us: int) -> list[Volume]:
        """Remove and return every volume whose time window has ended at ``now_us``."""
        n = self._cols.n
        ended = np.flatnonzero(self._cols.alive[:n] & (self._cols.te[:n] <= now_us))
        gone = [v for v in (self._volumes[s] for s in ended.tolist()) if v is not None]
        for v in gone:
            self._drop(v.key)
        return gone

    def rebuild(self) -> None:
        """Rebuild the grid over every live volume (compacting removed ones away)."""
        cols = self._cols
        if self._dead:
            keep = np.flatnonzero(cols.alive[: cols.n])
            cols.compact(keep)
            self._volumes = [self._volumes[i] for i in keep.tolist()]
            self._slot = {v.key: i for i, v in enumerate(self._volumes) if v is not None}
            self._dead = 0
        self._grid = _Grid(cols, np.arange(cols.n, dtype=I8)) if cols.n else None
        self._built_n = cols.n

    def volumes(self) -> list[Volume]:
        return [v for v in self._volumes if v is not None]

    def get(self, key: tuple[str, str]) -> Volume | None:
        slot = self._slot.get(key)
        return None if slot is None else self._volumes[slot]

    def volume(self, slot: int) -> Volume:
        v = self._volumes[slot]
        if v is None:
            raise KeyError(slot)
        return v

    # ---- queries -------------------------------------------------------------------------------

    def pairs(self, queries: Sequence[Volume]) -> tuple[Arr, Arr]:
        """Every (query index, slot) whose volumes conflict, excluding a query's own key.

        Conflict: footprints intersect (touching counts), altitude bands overlap (closed), time
        windows overlap (half-open).
        """
        if not queries:
            return np.empty(0, I8), np.empty(0, I8)
        boxes = Boxes.of(queries)
        geoms = np.empty(len(queries), object)
        geoms[:] = [v.footprint for v in queries]
        self_slots = np.fromiter((self._slot.get(v.key, -1) for v in queries), I8, len(queries))
        return self.pairs_boxes(boxes, geoms, self_slots, exact=True)

    def pairs_boxes(
        self, q: Boxes, geoms: Arr | None, self_slots: Arr, *, exact: bool
    ) -> tuple[Arr, Arr]:
        """Pairs of boxes ``q`` (with footprints ``geoms`` when ``exact``) and indexed slots."""
        if self._cols.n - self._built_n > PENDING_MAX // 4 and len(q.ts) > 64:
            self.rebuild()  # a batch pays for the rebuild; single queries scan pending ones
        n = len(q.ts)
        if exact and geoms is not None:
            shapely.prepare(geoms)
        chunks = [np.arange(i, min(i + CHUNK, n), dtype=I8) for i in range(0, n, CHUNK)]

        def run(idx: Arr) -> tuple[Arr, Arr]:
            return self._pairs_chunk(q, geoms, self_slots, idx, exact)

        if self.workers > 1 and len(chunks) > 1:
            with ThreadPoolExecutor(self.workers) as pool:
                results = list(pool.map(run, chunks))
        else:
            results = [run(c) for c in chunks]
        if not results:
            return np.empty(0, I8), np.empty(0, I8)
        return (
            np.concatenate([r[0] for r in results]),
            np.concatenate([r[1] for r in results]),
        )

    def _pairs_chunk(
        self, q: Boxes, geoms: Arr | None, self_slots: Arr, idx: Arr, exact: bool
    ) -> tuple[Arr, Arr]:
        cols = self._cols
        parts_q: list[Arr] = []
        parts_s: list[Arr] = []
        grid = self._grid
        if grid is not None and len(grid.keys):
            qi, slots = self._grid_candidates(grid, q, idx)
            parts_q.append(qi)
            parts_s.append(slots)
        # Linear parts: the grid's oversize volumes and the pending ones, against every query.
        linear = np.arange(self._built_n, cols.n, dtype=I8)
        if grid is not None and len(grid.oversize):
            linear = np.concatenate([grid.oversize, linear])
        if len(linear):
            qi = np.repeat(idx, len(linear))
            slots = np.tile(linear, len(idx))
            m = _box_filter(cols, q, qi, slots)
            parts_q.append(qi[m])
            parts_s.append(slots[m])
        if not parts_q:
            return np.empty(0, I8), np.empty(0, I8)
        qi = np.concatenate(parts_q)
        slots = np.concatenate(parts_s)
        m = slots != self_slots[qi]
        qi, slots = qi[m], slots[m]
        if exact and geoms is not None and len(qi):
            m = shapely.intersects(geoms[qi], cols.geoms[slots])
            qi, slots = qi[m], slots[m]
        return qi, slots

    def _grid_candidates(self, grid: _Grid, q: Boxes, idx: Arr) -> tuple[Arr, Arr]:
        cols = self._cols
        lows = [q.xmin[idx], q.ymin[idx], q.ts[idx].astype(F8), q.alo[idx]]
        highs = [q.xmax[idx], q.ymax[idx], q.te[idx].astype(F8), q.ahi[idx]]
        ranges = grid.ranges(lows, highs)
        counts = np.ones(len(idx), dtype=I8)
        for lo, hi in ranges:
            counts *= hi - lo + 1
        owner, keys = grid.expand(ranges, counts)
        pos = np.searchsorted(grid.keys, keys)
        pos_c = np.minimum(pos, len(grid.keys) - 1)
        found = grid.keys[pos_c] == keys
        owner, keys, pos_c = owner[found], keys[found], pos_c[found]
        start = grid.offsets[pos_c]
        n_in = grid.offsets[pos_c + 1] - start
        total = int(n_in.sum())
        rel = np.arange(total, dtype=I8) - np.repeat(np.cumsum(n_in) - n_in, n_in)
        entry = np.repeat(start, n_in) + rel
        slots = grid.entries[entry].astype(I8)
        qi = idx[np.repeat(owner, n_in)]
        cell_key = np.repeat(keys, n_in)
        m = _box_filter(cols, q, qi, slots)
        qi, slots, cell_key = _compress(m, qi, slots, cell_key)
        # Keep each pair only in the cell of the greatest lower corner of its two boxes.
        ref = grid.key(
            grid.cell(0, np.maximum(q.xmin[qi], cols.xmin[slots])),
            grid.cell(1, np.maximum(q.ymin[qi], cols.ymin[slots])),
            grid.cell(2, np.maximum(q.ts[qi], cols.ts[slots]).astype(F8)),
            grid.cell(3, np.maximum(q.alo[qi], cols.alo[slots])),
        )
        m = ref == cell_key
        return qi[m], slots[m]
