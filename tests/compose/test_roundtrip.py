"""Property: any valid body survives model -> canonical JSON -> validate unchanged."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hotline.compose.catalog import body_to_json, validate_body
from hotline.compose.render import render

_FORBIDDEN = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029"
_chars = st.characters(
    blacklist_categories=("Cc", "Cs"), blacklist_characters=_FORBIDDEN, max_codepoint=0x2FFFF
)
line = st.text(_chars, min_size=1, max_size=40).filter(str.strip)
prose = st.lists(line, min_size=1, max_size=4).map("\n".join)
lon = st.floats(-180, 180, allow_nan=False)
lat = st.floats(-90, 90, allow_nan=False)
position = st.tuples(lon, lat).map(list)
moment = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
metres = st.floats(1e-3, 2_000_000, allow_nan=False)


def _iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


@st.composite
def window(draw: st.DrawFn) -> dict[str, str]:
    start = draw(moment)
    length = draw(st.integers(1, 366 * 86400))
    return {"start": _iso(start), "end": _iso(start + timedelta(seconds=length))}


@st.composite
def altitude(draw: st.DrawFn) -> dict[str, float]:
    a, b = sorted(draw(st.lists(st.floats(-11_000, 40_000_000), min_size=2, max_size=2)))
    return {"lower_m": a, "upper_m": b}


@st.composite
def ring(draw: st.DrawFn) -> list[list[float]]:
    points = draw(st.lists(position, min_size=3, max_size=8))
    return [*points, points[0]]


footprint = st.one_of(
    st.builds(lambda c, r: {"type": "Circle", "center": c, "radius_m": r}, position, metres),
    st.builds(
        lambda rings: {"type": "Polygon", "coordinates": rings},
        st.lists(ring(), min_size=1, max_size=3),
    ),
    st.builds(
        lambda polys: {"type": "MultiPolygon", "coordinates": polys},
        st.lists(st.lists(ring(), min_size=1, max_size=2), min_size=1, max_size=3),
    ),
    st.builds(
        lambda pts, w: {
            "type": "Corridor",
            "centerline": {"type": "LineString", "coordinates": pts},
            "half_width_m": w,
        },
        st.lists(position, min_size=2, max_size=6),
        metres,
    ),
)
volume = st.fixed_dictionaries({"footprint": footprint, "altitude": altitude(), "window": window()})
counts = st.integers(0, 5_000_000)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | line,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(line, inner, max_size=3),
    max_leaves=10,
)


@st.composite
def exercise(draw: st.DrawFn) -> dict[str, Any]:
    start = draw(st.dates(max_value=date(9000, 1, 1)))
    end = start + timedelta(days=draw(st.integers(0, 60)))
    return {
        "name": draw(line),
        "exercise_type": draw(
            st.sampled_from(
                [
                    "land_forces",
                    "amphibious_landing",
                    "heliborne_landing",
                    "parachute_assault",
                    "transfer",
                ]
            )
        ),
        "purpose": draw(prose),
        "start_date": start.isoformat(),
        "end_date": end.isoformat(),
        "area": {"description": draw(prose)},
        **{
            k: draw(counts)
            for k in (
                "troops",
                "battle_tanks",
                "armoured_combat_vehicles",
                "artillery_pieces",
                "combat_aircraft_sorties",
                "helicopters",
            )
        },
        "observers_invited": draw(st.booleans()),
    }


BODIES = st.one_of(
    st.tuples(
        st.just("free_text"),
        st.fixed_dictionaries({"text": prose, "lang": st.sampled_from(["en", "ru", "zh-Hant"])}),
    ),
    st.tuples(
        st.just("activity_notification"),
        st.fixed_dictionaries(
            {
                "kind": st.sampled_from(
                    ["air", "maritime", "ground", "missile_launch", "space_launch", "other"]
                ),
                "volumes": st.lists(volume, min_size=1, max_size=3),
                "units": st.lists(line, min_size=1, max_size=3),
                "contact": line,
            },
            optional={"remarks": prose},
        ),
    ),
    st.tuples(st.just("exercise_notification"), exercise()),
    st.tuples(
        st.just("incident_report"),
        st.fixed_dictionaries(
            {
                "occurred_at": moment.map(_iso),
                "position": position,
                "domain": st.sampled_from(["air", "sea"]),
                "units_involved": st.lists(line, min_size=1, max_size=3),
                "narrative": prose,
                "severity": st.sampled_from(["low", "medium", "high", "critical"]),
            }
        ),
    ),
    st.tuples(
        st.just("request_for_information"),
        st.fixed_dictionaries(
            {"subject": line, "questions": st.lists(prose, min_size=1, max_size=3)}
        ),
    ),
    st.tuples(
        st.just("response"),
        st.fixed_dictionaries(
            {"in_reply_to": st.uuids().map(str), "text": prose}, optional={"action_taken": prose}
        ),
    ),
    st.tuples(
        st.just("link_test"),
        st.fixed_dictionaries(
            {
                "counter": st.integers(0, 2**63 - 1),
                "nonce": st.binary(min_size=8, max_size=32).map(bytes.hex),
            }
        ),
    ),
    st.tuples(
        st.just("cyber_referral"),
        st.fixed_dictionaries(
            {
                "stix_bundle": st.dictionaries(line, json_value, max_size=4),
                "narrative": prose,
                "requested_actions": st.lists(
                    st.sampled_from(
                        [
                            "investigate",
                            "takedown",
                            "detain_or_prosecute",
                            "preserve_evidence",
                            "share_information",
                        ]
                    ),
                    min_size=1,
                    max_size=5,
                    unique=True,
                ),
                "response_deadline": moment.map(_iso),
                "tlp": st.sampled_from(["clear", "green", "amber", "amber+strict", "red"]),
            }
        ),
    ),
)


@settings(max_examples=150, deadline=None)
@given(BODIES)
def test_round_trip(case: tuple[str, dict[str, Any]]) -> None:
    msg_type, body = case
    model = validate_body(msg_type, body)
    canonical = body_to_json(model)
    again = validate_body(msg_type, canonical)
    assert again == model
    assert body_to_json(again) == canonical


@settings(max_examples=60, deadline=None)
@given(BODIES, st.sampled_from(["en", "ru"]))
def test_every_valid_body_renders(case: tuple[str, dict[str, Any]], lang: str) -> None:
    msg_type, body = case
    text = render(msg_type, body, lang=lang, tz="Asia/Kamchatka")
    assert text.endswith("\n")
    assert text.startswith("HOTLINE · ")
