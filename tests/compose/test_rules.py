"""Notification rules at, just below and just above each figure and each lead time."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from hotline.compose.catalog import validate_body
from hotline.compose.rules import (
    Direction,
    FindingKind,
    Level,
    Regime,
    check_incoming,
    check_outgoing,
    load_regimes,
)
from hotline.errors import InputError

START = date(2027, 3, 10)


def _exercise(examples: dict[str, Any], **changes: Any) -> Any:
    body = examples["exercise_notification"]
    body.update(
        troops=0,
        battle_tanks=0,
        armoured_combat_vehicles=0,
        artillery_pieces=0,
        observers_invited=False,
        start_date=START.isoformat(),
    )
    body.update(changes)
    return validate_body("exercise_notification", body)


def _days_before(days: int, hour: int = 12) -> datetime:
    day = START - timedelta(days=days)
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def _ids(findings: list[Any]) -> list[str]:
    return [f.rule_id for f in findings]


def test_shipped_rules_files_load() -> None:
    ids = {doc.document.id for doc in load_regimes()}
    assert ids == {"vd2011", "incsea1972", "bmln1988"}


def test_vienna_document_figures() -> None:
    (vd,) = [r for r in load_regimes() if r.document.id == "vd2011"]
    land, landing = vd.exercise_notice
    assert land.min_lead_days == 42
    assert land.any_of == {
        "troops": 9000,
        "battle_tanks": 250,
        "armoured_combat_vehicles": 500,
        "artillery_pieces": 250,
    }
    assert landing.any_of == {"troops": 3000}
    obs_land, obs_landing = vd.exercise_observation
    assert obs_land.any_of == {
        "troops": 13000,
        "battle_tanks": 300,
        "armoured_combat_vehicles": 500,
        "artillery_pieces": 250,
    }
    assert obs_landing.any_of == {"troops": 3500}


@pytest.mark.parametrize(
    ("field", "threshold"),
    [
        ("troops", 9000),
        ("battle_tanks", 250),
        ("armoured_combat_vehicles", 500),
        ("artillery_pieces", 250),
    ],
)
def test_notification_threshold(field: str, threshold: int, examples: dict[str, Any]) -> None:
    late = _days_before(10)
    # ACV and artillery figures are the same for observation; invite to see only the notice rule.
    below = _exercise(examples, observers_invited=True, **{field: threshold - 1})
    at = _exercise(examples, observers_invited=True, **{field: threshold})
    assert check_outgoing("exercise_notification", below, late) == []
    assert _ids(check_outgoing("exercise_notification", at, late)) == ["vd2011.notice.land"]


def test_lead_time_counts_calendar_days(examples: dict[str, Any]) -> None:
    model = _exercise(examples, troops=9000)
    # 42 days before the start date, at any hour of that UTC day, is in time.
    for hour in (0, 23):
        assert check_outgoing("exercise_notification", model, _days_before(42, hour)) == []
    assert check_outgoing("exercise_notification", model, _days_before(43)) == []
    (finding,) = check_outgoing("exercise_notification", model, _days_before(41, 0))
    assert finding.kind is FindingKind.LATE
    assert finding.level is Level.WARNING
    assert finding.lead == timedelta(days=41)
    assert finding.text("en") == (
        "[WARNING] Notified 41 days ahead; at least 42 days is required. "
        "(Vienna Document 2011, chapter V, paras. 38, 40.1.1, 40.3.1)"
    )
    assert finding.text("ru") == (
        "[ПРЕДУПРЕЖДЕНИЕ] Уведомление направлено за 41 день; требуется не менее чем за 42 дня. "
        "(Венский документ 2011 года, глава V, пункты 38, 40.1.1, 40.3.1)"
    )


def test_notified_after_the_start(examples: dict[str, Any]) -> None:
    model = _exercise(examples, battle_tanks=400, observers_invited=True)
    (finding,) = check_outgoing("exercise_notification", model, _days_before(-1))
    assert "after the start" in finding.text("en")
    assert "после начала" in finding.text("ru")


@pytest.mark.parametrize("exercise_type", ["amphibious_landing", "parachute_assault"])
def test_landing_thresholds(exercise_type: str, examples: dict[str, Any]) -> None:
    late = _days_before(5)
    below = _exercise(examples, exercise_type=exercise_type, troops=2999)
    assert check_outgoing("exercise_notification", below, late) == []
    notify = _exercise(examples, exercise_type=exercise_type, troops=3499)
    assert _ids(check_outgoing("exercise_notification", notify, late)) == ["vd2011.notice.landing"]
    observe = _exercise(examples, exercise_type=exercise_type, troops=3500)
    assert _ids(check_outgoing("exercise_notification", observe, _days_before(50))) == [
        "vd2011.observation.landing"
    ]


@pytest.mark.parametrize(
    ("field", "threshold"),
    [
        ("troops", 13000),
        ("battle_tanks", 300),
        ("armoured_combat_vehicles", 500),
        ("artillery_pieces", 250),
    ],
)
def test_observation_threshold(field: str, threshold: int, examples: dict[str, Any]) -> None:
    early = _days_before(60)
    below = _exercise(examples, **{field: threshold - 1})
    assert check_outgoing("exercise_notification", below, early) == []
    at = _exercise(examples, **{field: threshold})
    (finding,) = check_outgoing("exercise_notification", at, early)
    assert finding.kind is FindingKind.OBSERVERS_NOT_INVITED
    assert finding.rule_id == "vd2011.observation.land"
    invited = _exercise(examples, observers_invited=True, **{field: threshold})
    assert check_outgoing("exercise_notification", invited, early) == []


def test_observation_finding_text(examples: dict[str, Any]) -> None:
    model = _exercise(examples, troops=14500, battle_tanks=300)
    (finding,) = check_incoming("exercise_notification", model, _days_before(60))
    assert finding.direction is Direction.INCOMING
    assert finding.text("en") == (
        "[WARNING] The notification does not invite observers although the activity reaches "
        "troops 14,500 ≥ 13,000; battle tanks 300 ≥ 300. (Vienna Document 2011, chapter VI, "
        "para. 47.4)"
    )
    assert "личный состав 14\xa0500 ≥ 13\xa0000" in finding.text("ru")


def test_late_and_no_observers_together(examples: dict[str, Any]) -> None:
    model = _exercise(examples, troops=20000)
    findings = check_incoming("exercise_notification", model, _days_before(30))
    assert _ids(findings) == ["vd2011.notice.land", "vd2011.observation.land"]
    assert findings[0].text("en").startswith("[WARNING] Received 30 days ahead")


def _activity(examples: dict[str, Any], kind: str) -> Any:
    body = examples["activity_notification"]
    body["kind"] = kind
    return validate_body("activity_notification", body)


FIRST_START = datetime(2026, 12, 1, 6, tzinfo=UTC)  # the earliest volume of the example


@pytest.mark.parametrize(
    ("lead", "expected"),
    [
        (timedelta(hours=72) - timedelta(seconds=1), FindingKind.LATE),
        (timedelta(hours=72), FindingKind.SHORT_NOTICE),
        (timedelta(hours=120) - timedelta(seconds=1), FindingKind.SHORT_NOTICE),
        (timedelta(hours=120), None),
    ],
)
def test_incidents_at_sea_notice(
    lead: timedelta, expected: FindingKind | None, examples: dict[str, Any]
) -> None:
    model = _activity(examples, "maritime")
    findings = check_outgoing("activity_notification", model, FIRST_START - lead)
    assert [f.kind for f in findings] == ([expected] if expected else [])
    if expected is FindingKind.SHORT_NOTICE:
        assert findings[0].level is Level.INFO


def test_incidents_at_sea_text(examples: dict[str, Any]) -> None:
    model = _activity(examples, "maritime")
    (finding,) = check_incoming("activity_notification", model, FIRST_START - timedelta(hours=49))
    assert finding.text("en") == (
        "[WARNING] Received 2 days 1 hour ahead; at least 3 days is required. "
        "(Incidents at Sea Agreement (1972), article VI, para. 1)"
    )
    assert finding.text("ru") == (
        "[ПРЕДУПРЕЖДЕНИЕ] Уведомление получено за 2 дня 1 час; требуется не менее чем за 3 дня. "
        "(Соглашение о предотвращении инцидентов на море (1972), статья VI, пункт 1)"
    )


def test_missile_launch_notice(examples: dict[str, Any]) -> None:
    model = _activity(examples, "missile_launch")
    assert check_outgoing("activity_notification", model, FIRST_START - timedelta(hours=24)) == []
    (finding,) = check_outgoing(
        "activity_notification", model, FIRST_START - timedelta(hours=23, minutes=59)
    )
    assert finding.rule_id == "bmln1988.notice.launch"
    assert "23 hours" in finding.text("en")
    assert "23 часа" in finding.text("ru")


@pytest.mark.parametrize("kind", ["air", "ground", "space_launch", "other"])
def test_other_activities_have_no_notice_rule(kind: str, examples: dict[str, Any]) -> None:
    model = _activity(examples, kind)
    assert check_outgoing("activity_notification", model, FIRST_START) == []


def test_other_message_types_have_no_findings(examples: dict[str, Any]) -> None:
    model = validate_body("incident_report", examples["incident_report"])
    assert check_incoming("incident_report", model, FIRST_START) == []


def test_mismatched_type_and_naive_time(examples: dict[str, Any]) -> None:
    model = _exercise(examples, troops=9000)
    with pytest.raises(InputError):
        check_outgoing("activity_notification", model, FIRST_START)
    with pytest.raises(InputError):
        check_outgoing("exercise_notification", model, datetime(2027, 1, 1))


def test_custom_regime(examples: dict[str, Any]) -> None:
    regime = Regime.model_validate(
        {
            "document": {"id": "x", "title": "Test Accord", "reference": "none"},
            "activity_notice": [
                {
                    "id": "x.air",
                    "activity_kinds": ["air"],
                    "min_lead_hours": 6,
                    "citation": {"article": "2", "paragraphs": []},
                }
            ],
        },
        strict=False,
    )
    model = _activity(examples, "air")
    (finding,) = check_outgoing(
        "activity_notification", model, FIRST_START - timedelta(hours=5), regimes=[regime]
    )
    # A title with no translation falls back to the English text.
    assert finding.text("ru").endswith("(Test Accord, статья 2)")
