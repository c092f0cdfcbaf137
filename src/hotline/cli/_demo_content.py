"""What ``hotline demo`` puts on the link so that every page of the console has something on it:
one message of each catalog type, an own plan that meets the peer's notified activity, and a
cyber referral. All of it is made up; times are relative to now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hotline.compose import RequestedAction, Tlp
from hotline.core.encoding import encode_json


def _z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def air_activity(now: datetime) -> dict[str, Any]:
    """A refuelling track over the eastern Mediterranean, tomorrow morning."""
    start = (now + timedelta(days=1)).replace(hour=6, minute=0, second=0, microsecond=0)
    return {
        "kind": "air",
        "volumes": [
            {
                "footprint": {"type": "Circle", "center": [35.6, 34.6], "radius_m": 30000},
                "altitude": {"lower_m": 6000, "upper_m": 9000},
                "window": {"start": _z(start), "end": _z(start + timedelta(hours=4))},
            },
            {
                "footprint": {
                    "type": "Corridor",
                    "centerline": {
                        "type": "LineString",
                        "coordinates": [[34.2, 33.9], [35.4, 34.5]],
                    },
                    "half_width_m": 9260,
                },
                "altitude": {"lower_m": 7000, "upper_m": 8500},
                "window": {"start": _z(start), "end": _z(start + timedelta(hours=1))},
            },
        ],
        "units": ["REACH 41", "SHELL 7 (tanker)"],
        "contact": "hotline desk 3, HF 8992 kHz",
        "remarks": "Air-to-air refuelling. No live firing.",
    }


def own_plan_geojson(now: datetime) -> dict[str, Any]:
    """Our own sortie box, crossing the peer's refuelling circle: a conflict on the map."""
    start = (now + timedelta(days=1)).replace(hour=7, minute=0, second=0, microsecond=0)
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "id": "SORTIE-7",
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [
                        [
                            [35.3, 34.3],
                            [36.1, 34.3],
                            [36.1, 35.0],
                            [35.3, 35.0],
                            [35.3, 34.3],
                        ]
                    ],
                },
                "properties": {
                    "altitude_lower": 7500,
                    "altitude_upper": 11000,
                    "time_start": _z(start),
                    "time_end": _z(start + timedelta(hours=2)),
                },
            }
        ],
    }


def exercise(now: datetime) -> dict[str, Any]:
    start = (now + timedelta(days=60)).date()
    return {
        "name": "STEADFAST NORTH 27",
        "exercise_type": "land_forces",
        "purpose": "Defensive operations of a corps; command post and field training.",
        "start_date": start.isoformat(),
        "end_date": (start + timedelta(days=14)).isoformat(),
        "area": {"description": "Training areas in the north-western district"},
        "troops": 14500,
        "battle_tanks": 120,
        "armoured_combat_vehicles": 410,
        "artillery_pieces": 96,
        "combat_aircraft_sorties": 230,
        "helicopters": 24,
        "observers_invited": True,
    }


def incident(now: datetime) -> dict[str, Any]:
    return {
        "occurred_at": _z(now - timedelta(hours=5)),
        "position": [33.95, 34.9],
        "domain": "sea",
        "units_involved": ["Destroyer DDG-101", "Frigate 545"],
        "narrative": "Frigate 545 crossed ahead at 150 m without signals.",
        "severity": "high",
    }


def request_for_information() -> dict[str, Any]:
    return {
        "subject": "Launch notified for next week",
        "questions": ["Please confirm the launch azimuth.", "Is a second launch planned?"],
    }


def referral_bundle(now: datetime) -> bytes:
    """A small STIX 2.1 bundle: a command-and-control server and its indicator."""
    created = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return encode_json(
        {
            "type": "bundle",
            "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d",
            "objects": [
                {
                    "type": "infrastructure",
                    "spec_version": "2.1",
                    "id": "infrastructure--38c47d93-d984-4fd9-b87b-d69d0841628d",
                    "created": created,
                    "modified": created,
                    "name": "Ransomware staging server",
                    "infrastructure_types": ["command-and-control"],
                },
                {
                    "type": "indicator",
                    "spec_version": "2.1",
                    "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
                    "created": created,
                    "modified": created,
                    "name": "C2 address",
                    "pattern": "[ipv4-addr:value = '198.51.100.3']",
                    "pattern_type": "stix",
                    "valid_from": created,
                    "indicator_types": ["malicious-activity"],
                },
            ],
        }
    )


REFERRAL_ACTIONS = [RequestedAction.TAKEDOWN, RequestedAction.PRESERVE_EVIDENCE]
REFERRAL_TLP = Tlp.AMBER
