"""4D deconfliction: exact conflicts between both sides' activities (docs/deconfliction.md).

Volumes come in as GeoJSON or ASTM F3548 Volume4D (``parse_geojson``, ``parse_volume4d``) and go
out the same ways (``to_geojson``, ``to_volume4d``). The ``Engine`` indexes active volumes in
memory and finds conflicts and near misses; the ``Registry`` keeps them in the node's store,
with versions, plans (``file_plan``) and received notifications (``receive_notification``).
"""

from __future__ import annotations

from hotline.deconfliction._activity import activity_volumes
from hotline.deconfliction._conflict import (
    FT,
    NM,
    Conflict,
    ConflictKind,
    Engine,
    NearMiss,
    conflict_kind,
    volumes_conflict,
)
from hotline.deconfliction._geo import MAX_VERTICES, geodesic_area_m2
from hotline.deconfliction._parse import (
    parse_geojson,
    parse_time,
    parse_volume4d,
    to_geojson,
    to_volume4d,
)
from hotline.deconfliction._store import (
    NotificationAssessment,
    PlanResult,
    Registry,
    StalePlanError,
    assess_notification,
    draft_response,
    volumes_table,
)
from hotline.deconfliction._volume import OWN, Shape, ShapeKind, Volume, format_time, to_us

__all__ = [
    "FT",
    "MAX_VERTICES",
    "NM",
    "OWN",
    "Conflict",
    "ConflictKind",
    "Engine",
    "NearMiss",
    "NotificationAssessment",
    "PlanResult",
    "Registry",
    "Shape",
    "ShapeKind",
    "StalePlanError",
    "Volume",
    "activity_volumes",
    "assess_notification",
    "conflict_kind",
    "draft_response",
    "format_time",
    "geodesic_area_m2",
    "parse_geojson",
    "parse_time",
    "parse_volume4d",
    "to_geojson",
    "to_us",
    "to_volume4d",
    "volumes_conflict",
    "volumes_table",
]
