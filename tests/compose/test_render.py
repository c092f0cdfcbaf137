"""Rendered text of every message type in both languages, pinned by committed snapshots.

Regenerate after an intended change with: HOTLINE_UPDATE_SNAPSHOTS=1 pytest tests/compose
and review the diff of tests/compose/snapshots/ like code.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from hotline.compose.catalog import MESSAGE_TYPES, validate_body
from hotline.compose.render import render, text_hash
from hotline.errors import ErrorCode, InputError

SNAPSHOTS = Path(__file__).parent / "snapshots"
#: Each language is read in the time zone of a command centre that reads it.
READERS = {"en": "America/New_York", "ru": "Europe/Moscow"}
UPDATE = os.environ.get("HOTLINE_UPDATE_SNAPSHOTS") == "1"


def _check_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no snapshot {name}; run with HOTLINE_UPDATE_SNAPSHOTS=1"
    assert text == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("lang", sorted(READERS))
@pytest.mark.parametrize("msg_type", list(MESSAGE_TYPES))
def test_snapshot(msg_type: str, lang: str, examples: dict[str, dict[str, Any]]) -> None:
    text = render(msg_type, examples[msg_type], lang=lang, tz=READERS[lang])
    _check_snapshot(f"{msg_type}.{lang}.txt", text)


def test_snapshot_in_utc_only(examples: dict[str, dict[str, Any]]) -> None:
    text = render("incident_report", examples["incident_report"], lang="en", tz="UTC")
    _check_snapshot("incident_report.en.utc.txt", text)
    assert "America" not in text
    assert text.count(" UTC") == 1


def test_render_accepts_a_validated_model(examples: dict[str, dict[str, Any]]) -> None:
    model = validate_body("link_test", examples["link_test"])
    assert render("link_test", model) == render("link_test", examples["link_test"])


def test_render_validates_raw_bodies(examples: dict[str, dict[str, Any]]) -> None:
    body = examples["incident_report"]
    body["severity"] = "apocalyptic"
    with pytest.raises(InputError) as info:
        render("incident_report", body)
    assert "severity" in info.value.fields


def test_model_of_another_type_is_revalidated(examples: dict[str, dict[str, Any]]) -> None:
    model = validate_body("link_test", examples["link_test"])
    with pytest.raises(InputError):
        render("free_text", model)


def test_unknown_language_and_zone() -> None:
    with pytest.raises(InputError) as info:
        render("link_test", {"counter": 1, "nonce": "00" * 8}, lang="xx")
    assert set(info.value.fields) == {"lang"}
    assert info.value.code is ErrorCode.INVALID_INPUT
    for tz in ("Mars/Olympus", "../../etc/passwd", ""):
        with pytest.raises(InputError) as info:
            render("link_test", {"counter": 1, "nonce": "00" * 8}, tz=tz)
        assert set(info.value.fields) == {"tz"}


def test_prose_cannot_forge_a_label(examples: dict[str, dict[str, Any]]) -> None:
    body = examples["incident_report"]
    body["narrative"] = "Nothing happened.\nSeverity:        LOW"
    text = render("incident_report", body)
    lines = text.splitlines()
    assert sum(line.startswith("Severity:") for line in lines) == 1
    assert "  | Severity:        LOW" in lines


def test_text_hash_is_sha256_of_utf8() -> None:
    text = "Прием\n"
    assert text_hash(text) == hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert len(text_hash("")) == 64


def test_rendering_is_deterministic(examples: dict[str, dict[str, Any]]) -> None:
    for msg_type, body in examples.items():
        assert text_hash(render(msg_type, body, "ru", "Asia/Vladivostok")) == text_hash(
            render(msg_type, body, "ru", "Asia/Vladivostok")
        )


def test_imperial_units_only_for_air_and_sea(examples: dict[str, dict[str, Any]]) -> None:
    body = examples["activity_notification"]
    assert " ft)" in render("activity_notification", body)
    body["kind"] = "ground"
    text = render("activity_notification", body)
    assert " ft)" not in text
    assert " NM)" not in text


def test_seconds_shown_only_when_present(examples: dict[str, dict[str, Any]]) -> None:
    text = render("incident_report", examples["incident_report"], tz="UTC")
    assert "13:42:10 UTC" in text


def test_large_polygon_is_shown_by_extent(examples: dict[str, dict[str, Any]]) -> None:
    body = examples["activity_notification"]
    ring = [[float(i) / 10, 0.0] for i in range(30)] + [[1.0, 1.0], [0.0, 0.0]]
    body["volumes"] = [
        dict(body["volumes"][1], footprint={"type": "Polygon", "coordinates": [ring]})
    ]
    text = render("activity_notification", body)
    assert "Polygon, 32 vertices" in text
    assert "Vertices:" not in text


def test_multipolygon_counts(examples: dict[str, dict[str, Any]]) -> None:
    body = examples["activity_notification"]
    square = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]
    body["volumes"][1]["footprint"] = {"type": "MultiPolygon", "coordinates": [[square]] * 2}
    assert "2 polygons, 8 vertices" in render("activity_notification", body)
    assert "2 многоугольника, 8 вершин" in render("activity_notification", body, lang="ru")
