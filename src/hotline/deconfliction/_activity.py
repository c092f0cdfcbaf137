"""Volumes of an ``activity_notification`` message, in the engine's terms.

The message catalog describes each 4D volume as a footprint (GeoJSON Polygon or MultiPolygon, a
Circle with ``center`` and ``radius_m``, or a Corridor with a ``centerline`` and
``half_width_m``), an altitude band and a time window. Each becomes one ``Volume`` whose id is
``<message id>/<index>``, checked by the same parser as any GeoJSON input.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hotline.deconfliction._parse import parse_geojson
from hotline.deconfliction._volume import Volume
from hotline.errors import InputError


def _geometry(footprint: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    kind = footprint.get("type")
    if kind == "Circle":
        return {"type": "Point", "coordinates": footprint["center"]}, {
            "radius_m": footprint["radius_m"]
        }
    if kind == "Corridor":
        return dict(footprint["centerline"]), {"half_width_m": footprint["half_width_m"]}
    if kind in ("Polygon", "MultiPolygon"):
        return dict(footprint), {}
    raise InputError(f"unknown footprint type {kind!r}", fields={"footprint.type": str(kind)})


def activity_volumes(message_id: str, body: Mapping[str, Any], *, owner: str) -> list[Volume]:
    """The volumes of a (catalog-validated) activity notification body, owned by ``owner``."""
    features = []
    for index, volume in enumerate(body.get("volumes", [])):
        geometry, extra = _geometry(volume["footprint"])
        features.append(
            {
                "type": "Feature",
                "id": f"{message_id}/{index}",
                "geometry": geometry,
                "properties": {
                    "altitude_lower": volume["altitude"]["lower_m"],
                    "altitude_upper": volume["altitude"]["upper_m"],
                    "time_start": volume["window"]["start"],
                    "time_end": volume["window"]["end"],
                    **extra,
                },
            }
        )
    return parse_geojson({"type": "FeatureCollection", "features": features}, owner=owner)


__all__ = ["activity_volumes"]
