"""Valid example bodies of every message type, shared by the catalog, rendering and rules tests."""

from __future__ import annotations

import copy
from typing import Any

import pytest

ACTIVITY: dict[str, Any] = {
    "kind": "air",
    "volumes": [
        {
            "footprint": {"type": "Circle", "center": [19.5, 54.6], "radius_m": 25000},
            "altitude": {"lower_m": 300, "upper_m": 9000},
            "window": {"start": "2026-12-01T06:00:00Z", "end": "2026-12-01T10:30:00Z"},
        },
        {
            "footprint": {
                "type": "Polygon",
                "coordinates": [[[20.0, 55.0], [21.0, 55.0], [21.0, 55.5], [20.0, 55.0]]],
            },
            "altitude": {"lower_m": 0, "upper_m": 12500.5},
            "window": {"start": "2026-12-01T08:00:00Z", "end": "2026-12-02T08:00:00Z"},
        },
        {
            "footprint": {
                "type": "Corridor",
                "centerline": {"type": "LineString", "coordinates": [[18.0, 54.0], [19.0, 54.2]]},
                "half_width_m": 9260,
            },
            "altitude": {"lower_m": 1500, "upper_m": 3000},
            "window": {"start": "2026-12-01T06:00:00Z", "end": "2026-12-01T07:00:00Z"},
        },
    ],
    "units": ["REACH 41", "2 x tanker, callsign SHELL 7"],
    "contact": "HF 8992 kHz / hotline desk 3",
    "remarks": "Air-to-air refuelling.\nNo live firing.",
}

EXAMPLES: dict[str, dict[str, Any]] = {
    "free_text": {"text": "Прошу подтвердить получение.\nДежурный офицер.", "lang": "ru"},
    "activity_notification": ACTIVITY,
    "exercise_notification": {
        "name": "STEADFAST NORTH 27",
        "exercise_type": "land_forces",
        "purpose": "Defensive operations of a corps; command post and field training.",
        "start_date": "2027-03-10",
        "end_date": "2027-03-24",
        "area": {
            "description": "Training areas near Żagań and Drawsko Pomorskie",
            "geometry": {
                "type": "Polygon",
                "coordinates": [[[15.0, 51.5], [16.5, 51.5], [16.5, 53.8], [15.0, 51.5]]],
            },
        },
        "troops": 14500,
        "battle_tanks": 120,
        "armoured_combat_vehicles": 410,
        "artillery_pieces": 96,
        "combat_aircraft_sorties": 230,
        "helicopters": 24,
        "observers_invited": True,
    },
    "incident_report": {
        "occurred_at": "2026-11-20T13:42:10Z",
        "position": [-5.25, 35.95],
        "domain": "sea",
        "units_involved": ["Destroyer DDG-101", "Frigate 545"],
        "narrative": "Frigate 545 crossed ahead at 150 m without signals, CPA 150 m.",
        "severity": "high",
    },
    "request_for_information": {
        "subject": "Launch notified for 2 December",
        "questions": ["Please confirm the impact area.", "Is the launch window still four days?"],
    },
    "response": {
        "in_reply_to": "0f8fad5b-d9cb-469f-a165-70867728950e",
        "text": "The impact area is unchanged.",
        "action_taken": "The notification was re-sent with corrected coordinates.",
    },
    "link_test": {"counter": 1042, "nonce": "9f86d081884c7d659a2feaa0c55ad015"},
    "cyber_referral": {
        "stix_bundle": {
            "type": "bundle",
            "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d",
            "objects": [
                {"type": "indicator", "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"},
                {"type": "ipv4-addr", "value": "198.51.100.3"},
            ],
        },
        "narrative": "Scanning of a power-grid operator from the address above since 18 November.",
        "requested_actions": ["investigate", "preserve_evidence"],
        "response_deadline": "2026-11-28T12:00:00Z",
        "tlp": "amber+strict",
    },
    "case_update": {
        "case_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
        "state": "declined",
        "note": "The address belongs to a hosting provider outside our jurisdiction.",
        "reason": "No infrastructure under our control was found.",
    },
}


@pytest.fixture
def examples() -> dict[str, dict[str, Any]]:
    """A fresh deep copy of every example, so a test may change its copy."""
    return copy.deepcopy(EXAMPLES)
