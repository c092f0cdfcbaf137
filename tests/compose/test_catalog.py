"""The catalog accepts every valid example and names the exact field of every invalid one."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from hotline.compose import catalog
from hotline.compose.catalog import MESSAGE_TYPES, body_to_json, validate_body, validate_body_json
from hotline.compose.limits import (
    MAX_BODY_BYTES,
    MAX_FOOTPRINT_VERTICES,
    MAX_LINE_CHARS,
    MAX_UNITS,
    MAX_VOLUMES,
)
from hotline.errors import ErrorCode, InputError

Body = dict[str, Any]


def test_every_type_has_an_example(examples: dict[str, Body]) -> None:
    assert set(examples) == set(MESSAGE_TYPES)


@pytest.mark.parametrize("msg_type", list(MESSAGE_TYPES))
def test_valid_examples_validate_and_round_trip(msg_type: str, examples: dict[str, Body]) -> None:
    model = validate_body(msg_type, examples[msg_type])
    assert type(model) is MESSAGE_TYPES[msg_type]
    assert catalog.msg_type_of(model) == msg_type
    again = validate_body(msg_type, body_to_json(model))
    assert again == model
    # The canonical JSON is stable: serializing twice gives the same bytes.
    assert json.dumps(body_to_json(again)) == json.dumps(body_to_json(model))
    assert validate_body_json(msg_type, json.dumps(examples[msg_type]).encode()) == model


def _set(path: str, value: object) -> Callable[[Body], None]:
    """A mutation that sets the value at a dotted path ("volumes.0.altitude.lower_m")."""

    def apply(body: Body) -> None:
        *parents, last = path.split(".")
        node: Any = body
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return apply


def _drop(key: str) -> Callable[[Body], None]:
    return lambda body: body.pop(key)


_SQUARE = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]

INVALID: list[tuple[str, Callable[[Body], None], str]] = [
    # free_text
    ("free_text", _set("lang", "Russian"), "lang"),
    ("free_text", _set("text", "   "), "text"),
    ("free_text", _set("text", "a\u202eb"), "text"),
    ("free_text", _set("text", 5), "text"),
    ("free_text", _drop("lang"), "lang"),
    ("free_text", _set("colour", "red"), "colour"),
    # activity_notification
    ("activity_notification", _set("kind", "submarine"), "kind"),
    ("activity_notification", _set("volumes", []), "volumes"),
    ("activity_notification", _set("units", []), "units"),
    ("activity_notification", _set("units.1", "TANKER\nKind: other"), "units.1"),
    ("activity_notification", _set("contact", "x" * (MAX_LINE_CHARS + 1)), "contact"),
    (
        "activity_notification",
        _set("volumes.0.footprint.center", [181.0, 0.0]),
        "volumes.0.footprint.center.0",
    ),
    (
        "activity_notification",
        _set("volumes.0.footprint.center", [0.0, -90.5]),
        "volumes.0.footprint.center.1",
    ),
    (
        "activity_notification",
        _set("volumes.0.footprint.center", [0.0, 1.0, 2.0]),
        "volumes.0.footprint.center",
    ),
    (
        "activity_notification",
        _set("volumes.0.footprint.radius_m", 0),
        "volumes.0.footprint.radius_m",
    ),
    (
        "activity_notification",
        _set("volumes.0.footprint.radius_m", "25000"),
        "volumes.0.footprint.radius_m",
    ),
    ("activity_notification", _set("volumes.0.footprint.type", "Square"), "volumes.0.footprint"),
    (
        "activity_notification",
        _set("volumes.1.footprint.coordinates", [[[0, 0], [1, 0], [1, 1], [0, 1]]]),
        "volumes.1.footprint",
    ),
    (
        "activity_notification",
        _set("volumes.1.footprint.coordinates", [[[0, 0], [1, 0], [0, 0]]]),
        "volumes.1.footprint.coordinates.0",
    ),
    (
        "activity_notification",
        _set(
            "volumes.1.footprint",
            {"type": "MultiPolygon", "coordinates": [[_SQUARE[:-1] * 400 + [_SQUARE[0]]]] * 3},
        ),
        "volumes.1.footprint.coordinates.0.0",
    ),
    (
        "activity_notification",
        _set(
            "volumes.1.footprint",
            {"type": "MultiPolygon", "coordinates": [[_SQUARE * 199]] * 5},
        ),
        "volumes.1.footprint",
    ),
    (
        "activity_notification",
        _set("volumes.2.footprint.centerline.coordinates", [[0.0, 0.0]]),
        "volumes.2.footprint.centerline.coordinates",
    ),
    (
        "activity_notification",
        _set("volumes.2.footprint.half_width_m", -1),
        "volumes.2.footprint.half_width_m",
    ),
    ("activity_notification", _set("volumes.0.altitude.lower_m", 9001), "volumes.0.altitude"),
    (
        "activity_notification",
        _set("volumes.0.altitude.upper_m", 5e7),
        "volumes.0.altitude.upper_m",
    ),
    (
        "activity_notification",
        _set("volumes.0.window.end", "2026-12-01T06:00:00Z"),
        "volumes.0.window",
    ),
    (
        "activity_notification",
        _set("volumes.0.window.start", "2026-12-01T09:00:00+03:00"),
        "volumes.0.window.start",
    ),
    (
        "activity_notification",
        _set("volumes.0.window.start", "2026-12-01T06:00:00"),
        "volumes.0.window.start",
    ),
    (
        "activity_notification",
        _set("volumes.0.window.start", "2026-02-30T06:00:00Z"),
        "volumes.0.window.start",
    ),
    ("activity_notification", _set("volumes.0.window.start", 1764568800), "volumes.0.window.start"),
    (
        "activity_notification",
        _set("volumes.0.window.end", "2028-01-01T00:00:00Z"),
        "volumes.0.window",
    ),
    ("activity_notification", _set("volumes.0.extra", 1), "volumes.0.extra"),
    # exercise_notification
    ("exercise_notification", _set("troops", -1), "troops"),
    ("exercise_notification", _set("troops", 10.5), "troops"),
    ("exercise_notification", _set("troops", "14500"), "troops"),
    ("exercise_notification", _set("battle_tanks", 10**9), "battle_tanks"),
    ("exercise_notification", _set("observers_invited", "yes"), "observers_invited"),
    ("exercise_notification", _set("observers_invited", 1), "observers_invited"),
    ("exercise_notification", _set("end_date", "2027-03-09"), "body"),
    ("exercise_notification", _set("start_date", "10.03.2027"), "start_date"),
    ("exercise_notification", _set("exercise_type", "naval"), "exercise_type"),
    ("exercise_notification", _set("area.geometry", {"type": "Circle"}), "area.geometry"),
    ("exercise_notification", _drop("helicopters"), "helicopters"),
    # incident_report
    ("incident_report", _set("position", [-5.25]), "position.1"),
    ("incident_report", _set("position", [-185, 35.95]), "position.0"),
    ("incident_report", _set("domain", "land"), "domain"),
    ("incident_report", _set("severity", "extreme"), "severity"),
    ("incident_report", _set("units_involved", ["x"] * (MAX_UNITS + 1)), "units_involved"),
    ("incident_report", _set("occurred_at", "yesterday"), "occurred_at"),
    # request_for_information / response
    ("request_for_information", _set("questions", []), "questions"),
    ("request_for_information", _set("questions.1", ""), "questions.1"),
    ("request_for_information", _set("subject", "a\tb"), "subject"),
    ("response", _set("in_reply_to", "not-a-uuid"), "in_reply_to"),
    ("response", _set("in_reply_to", "0F8FAD5B-D9CB-469F-A165-70867728950E"), "in_reply_to"),
    ("response", _set("action_taken", ""), "action_taken"),
    # link_test
    ("link_test", _set("counter", -1), "counter"),
    ("link_test", _set("counter", 2**63), "counter"),
    ("link_test", _set("nonce", "abc"), "nonce"),
    ("link_test", _set("nonce", "Z" * 32), "nonce"),
    # cyber_referral
    ("cyber_referral", _set("stix_bundle", []), "stix_bundle"),
    ("cyber_referral", _set("requested_actions", []), "requested_actions"),
    ("cyber_referral", _set("requested_actions", ["nuke"]), "requested_actions.0"),
    (
        "cyber_referral",
        _set("requested_actions", ["investigate", "investigate"]),
        "requested_actions",
    ),
    ("cyber_referral", _set("tlp", "white"), "tlp"),
    ("cyber_referral", _set("response_deadline", "2026-11-28"), "response_deadline"),
]


@pytest.mark.parametrize(
    ("msg_type", "mutate", "path"),
    INVALID,
    ids=[f"{t}:{p}:{i}" for i, (t, _, p) in enumerate(INVALID)],
)
def test_invalid_bodies_name_the_field(
    msg_type: str, mutate: Callable[[Body], None], path: str, examples: dict[str, Body]
) -> None:
    body = examples[msg_type]
    mutate(body)
    with pytest.raises(InputError) as info:
        validate_body(msg_type, body)
    err = info.value
    assert err.code is ErrorCode.INVALID_MESSAGE
    assert path in err.fields, err.fields
    assert err.to_dict()["code"] == "invalid_message"


def test_errors_list_every_bad_field(examples: dict[str, Body]) -> None:
    body = examples["incident_report"]
    body["domain"] = "land"
    body["severity"] = "extreme"
    with pytest.raises(InputError) as info:
        validate_body("incident_report", body)
    assert set(info.value.fields) == {"domain", "severity"}


def test_unknown_type() -> None:
    with pytest.raises(InputError) as info:
        validate_body("launch_codes", {})
    assert info.value.code is ErrorCode.INVALID_MESSAGE
    assert set(info.value.fields) == {"msg_type"}


@pytest.mark.parametrize("body", [[], "text", None, 5])
def test_body_must_be_an_object(body: object) -> None:
    with pytest.raises(InputError) as info:
        validate_body("free_text", body)
    assert info.value.fields == {"body": "must be a JSON object"}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), object(), b"bytes"])
def test_body_must_be_plain_json(bad: object) -> None:
    with pytest.raises(InputError) as info:
        validate_body("cyber_referral", {"stix_bundle": {"x": bad}})
    assert set(info.value.fields) == {"body"}


def test_oversized_body_is_refused_before_parsing() -> None:
    data = b'{"text": "' + b"a" * MAX_BODY_BYTES + b'", "lang": "en"}'
    with pytest.raises(InputError) as info:
        validate_body_json("free_text", data)
    assert set(info.value.fields) == {"body"}


def test_malformed_json_text() -> None:
    with pytest.raises(InputError) as info:
        validate_body_json("free_text", b'{"text": "a", ')
    assert info.value.code is ErrorCode.INVALID_MESSAGE


def test_volume_count_limit(examples: dict[str, Body]) -> None:
    body = examples["activity_notification"]
    body["volumes"] = body["volumes"][:1] * (MAX_VOLUMES + 1)
    with pytest.raises(InputError) as info:
        validate_body("activity_notification", body)
    assert "volumes" in info.value.fields


def test_vertex_limit_counts_all_rings(examples: dict[str, Body]) -> None:
    body = examples["activity_notification"]
    ring = _SQUARE[:-1] * 249 + [_SQUARE[0]]  # 997 positions, closed
    body["volumes"][1]["footprint"] = {"type": "Polygon", "coordinates": [ring] * 4}
    validate_body("activity_notification", body)  # 3,988 vertices: fine
    body["volumes"][1]["footprint"] = {"type": "Polygon", "coordinates": [ring] * 5}
    with pytest.raises(InputError) as info:
        validate_body("activity_notification", body)
    assert str(MAX_FOOTPRINT_VERTICES) in str(info.value.fields["volumes.1.footprint"])


def test_models_are_frozen(examples: dict[str, Body]) -> None:
    model = validate_body("free_text", examples["free_text"])
    with pytest.raises(ValueError, match="frozen"):
        model.text = "changed"  # type: ignore[misc]


def test_optional_fields_are_left_out_of_canonical_json(examples: dict[str, Body]) -> None:
    body = examples["response"]
    del body["action_taken"]
    assert "action_taken" not in body_to_json(validate_body("response", body))
    body["action_taken"] = None
    assert "action_taken" not in body_to_json(validate_body("response", body))


def test_duplicate_keys_are_refused() -> None:
    # Two JSON parsers may keep different copies of a repeated key; the signed bytes must mean
    # one thing only.
    with pytest.raises(InputError) as info:
        validate_body_json("free_text", b'{"text": "a", "lang": "en", "lang": "ru"}')
    assert "duplicate" in str(info.value.fields["body"])


def test_nan_constant_in_json_text_is_refused() -> None:
    with pytest.raises(InputError):
        validate_body_json("cyber_referral", b'{"stix_bundle": {"x": NaN}}')


def test_deep_nesting_is_refused() -> None:
    deep = b'{"stix_bundle": ' + b'{"a": ' * 40 + b"1" + b"}" * 40 + b"}"
    with pytest.raises(InputError) as info:
        validate_body_json("cyber_referral", deep)
    assert "nest" in str(info.value.fields["body"])
    very_deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(InputError):
        validate_body_json("cyber_referral", very_deep)


def test_bad_utf8_is_refused() -> None:
    with pytest.raises(InputError):
        validate_body_json("free_text", b'{"text": "\xff", "lang": "en"}')
