"""Conflicts and near misses between volumes, and the engine that finds them.

Owners: a volume's owner is ``"own"`` (this node's planned activities) or a peer's name. What a
conflict means depends on the two owners (``ConflictKind``): own against a peer's volume is what
the duty officer must act on and what a response names; own against own is our own planning
problem (shown to our operators, never sent); a peer's against another peer's is informational.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import shapely

from hotline.deconfliction._geo import _radii, areas_m2, local_distance_m
from hotline.deconfliction._index import VolumeIndex, pack_boxes
from hotline.deconfliction._volume import OWN, Volume, format_time
from hotline.errors import InputError

#: Largest near-miss buffer we search (metres), horizontally and vertically.
MAX_NEAR_HORIZONTAL_M = 200_000.0
MAX_NEAR_VERTICAL_M = 10_000.0
#: One nautical mile and one foot, in metres (for "within 5 NM and 1,000 ft").
NM = 1852.0
FT = 0.3048


class ConflictKind(StrEnum):
    OWN_VS_PEER = "own_vs_peer"
    OWN_VS_OWN = "own_vs_own"
    PEER_VS_PEER = "peer_vs_peer"


def conflict_kind(a: Volume, b: Volume) -> ConflictKind:
    own_a, own_b = a.owner == OWN, b.owner == OWN
    if own_a and own_b:
        return ConflictKind.OWN_VS_OWN
    if own_a or own_b:
        return ConflictKind.OWN_VS_PEER
    return ConflictKind.PEER_VS_PEER


@dataclass(frozen=True, slots=True)
class Conflict:
    """Two volumes that meet: the overlap of their windows and bands, and the shared area."""

    query: Volume
    active: Volume
    time_start_us: int
    time_end_us: int
    altitude_lower: float
    altitude_upper: float
    #: Area (WGS84 ellipsoid, square metres) of the footprints' intersection; 0 when they touch.
    area_m2: float
    kind: ConflictKind

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query.id,
            "active": self.active.id,
            "query_owner": self.query.owner,
            "active_owner": self.active.owner,
            "query_version": self.query.version,
            "active_version": self.active.version,
            "kind": str(self.kind),
            "time_start": format_time(self.time_start_us),
            "time_end": format_time(self.time_end_us),
            "altitude_lower": self.altitude_lower,
            "altitude_upper": self.altitude_upper,
            "area_m2": round(self.area_m2, 1),
        }


@dataclass(frozen=True, slots=True)
class NearMiss:
    """Two volumes that do not conflict but come within the requested buffer of each other."""

    query: Volume
    active: Volume
    time_start_us: int
    time_end_us: int
    #: Shortest horizontal distance between the footprints (0 when they intersect).
    horizontal_m: float
    #: Vertical gap between the bands (0 when they overlap).
    vertical_m: float
    kind: ConflictKind

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query.id,
            "active": self.active.id,
            "query_owner": self.query.owner,
            "active_owner": self.active.owner,
            "kind": str(self.kind),
            "time_start": format_time(self.time_start_us),
            "time_end": format_time(self.time_end_us),
            "horizontal_m": round(self.horizontal_m, 1),
            "vertical_m": round(self.vertical_m, 1),
        }


def _conflict(query: Volume, active: Volume, area_m2: float) -> Conflict:
    return Conflict(
        query=query,
        active=active,
        time_start_us=max(query.time_start_us, active.time_start_us),
        time_end_us=min(query.time_end_us, active.time_end_us),
        altitude_lower=max(query.altitude_lower, active.altitude_lower),
        altitude_upper=min(query.altitude_upper, active.altitude_upper),
        area_m2=area_m2,
        kind=conflict_kind(query, active),
    )


def volumes_conflict(a: Volume, b: Volume) -> bool:
    """The definition, pair by pair (the oracle the index is tested against)."""
    return (
        a.time_start_us < b.time_end_us
        and b.time_start_us < a.time_end_us
        and a.altitude_lower <= b.altitude_upper
        and b.altitude_lower <= a.altitude_upper
        and bool(shapely.intersects(a.footprint, b.footprint))
    )


class Engine(VolumeIndex):
    """The index of active volumes with conflict and near-miss queries."""

    def conflicts(self, queries: Volume | Sequence[Volume]) -> list[Conflict]:
        """Every conflict of the query volume(s) with the indexed ones, sorted by query then id.

        A query never conflicts with the indexed volume of the same ``(owner, id)`` (itself or
        the version it replaces).
        """
        qs = [queries] if isinstance(queries, Volume) else list(queries)
        qi, slots = self.pairs(qs)
        if not len(qi):
            return []
        qgeoms = np.array([v.footprint for v in qs], dtype=object)
        areas = areas_m2(shapely.intersection(qgeoms[qi], self._cols.geoms[slots]))
        out = [
            _conflict(qs[q], self.volume(s), area)
            for q, s, area in zip(qi.tolist(), slots.tolist(), areas.tolist(), strict=True)
        ]
        out.sort(key=lambda c: (c.query.owner, c.query.id, c.active.owner, c.active.id))
        return out

    def near_misses(
        self,
        queries: Volume | Sequence[Volume],
        *,
        horizontal_m: float = 5 * NM,
        vertical_m: float = 1000 * FT,
    ) -> list[NearMiss]:
        """Pairs that do not conflict but come within ``horizontal_m`` and ``vertical_m``.

        Time windows must overlap (a near miss in space at different times is no near miss).
        Horizontal separation is the shortest distance between the footprints in a local plane
        (relative error about 1e-3); vertical separation is the gap between the bands.
        """
        if not (0.0 <= horizontal_m <= MAX_NEAR_HORIZONTAL_M) or not math.isfinite(horizontal_m):
            raise InputError(
                f"horizontal_m must be 0 to {MAX_NEAR_HORIZONTAL_M:g}",
                fields={"field": "horizontal_m"},
            )
        if not (0.0 <= vertical_m <= MAX_NEAR_VERTICAL_M) or not math.isfinite(vertical_m):
            raise InputError(
                f"vertical_m must be 0 to {MAX_NEAR_VERTICAL_M:g}", fields={"field": "vertical_m"}
            )
        qs = [queries] if isinstance(queries, Volume) else list(queries)
        if not qs:
            return []
        geoms = np.array([v.footprint for v in qs], dtype=object)
        bounds = shapely.bounds(geoms).reshape(-1, 4)
        box = pack_boxes(qs, bounds)
        # Degrees that surely cover horizontal_m (with 1% to spare): smallest radii of curvature.
        lat_far = np.minimum(np.maximum(np.abs(bounds[:, 1]), np.abs(bounds[:, 3])) + 2.0, 89.0)
        m_min, n_far = _radii(np.zeros(1))[0], _radii(lat_far)[1]
        dy = math.degrees(horizontal_m * 1.01 / float(m_min[0]))
        dx = np.degrees(horizontal_m * 1.01 / (n_far * np.cos(np.radians(lat_far))))
        box[:, 0] -= dx
        box[:, 4] += dx
        box[:, 1] -= dy
        box[:, 5] += dy
        box[:, 3] -= vertical_m
        box[:, 7] += vertical_m
        self.settle_for_batch(len(qs))  # before self_slots: a rebuild renumbers slots
        qi, slots = self.pairs_boxes(box, None, self.self_slots(qs))
        out: list[NearMiss] = []
        for q, s in zip(qi.tolist(), slots.tolist(), strict=True):
            a, b = qs[q], self.volume(s)
            vgap = max(
                0.0, b.altitude_lower - a.altitude_upper, a.altitude_lower - b.altitude_upper
            )
            if vgap > vertical_m:
                continue
            touching = bool(shapely.intersects(a.footprint, b.footprint))
            if touching and vgap == 0.0:
                continue  # a conflict, not a near miss
            hsep = 0.0 if touching else local_distance_m(a.footprint, b.footprint)
            if hsep > horizontal_m:
                continue
            out.append(
                NearMiss(
                    query=a,
                    active=b,
                    time_start_us=max(a.time_start_us, b.time_start_us),
                    time_end_us=min(a.time_end_us, b.time_end_us),
                    horizontal_m=hsep,
                    vertical_m=vgap,
                    kind=conflict_kind(a, b),
                )
            )
        out.sort(key=lambda n: (n.query.owner, n.query.id, n.active.owner, n.active.id))
        return out
