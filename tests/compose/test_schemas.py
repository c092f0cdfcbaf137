"""The committed JSON Schemas match the models."""

from __future__ import annotations

import json
from pathlib import Path

from hotline.compose.catalog import MESSAGE_TYPES
from hotline.compose.schemas import main, schema_for, stale

DOCS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


def test_committed_schemas_are_current() -> None:
    assert stale(DOCS) == [], "run: python -m hotline.compose.schemas"
    assert main(["--check", "--out", str(DOCS)]) == 0


def test_one_schema_per_type() -> None:
    assert sorted(p.stem for p in DOCS.glob("*.json")) == sorted(MESSAGE_TYPES)


def test_schemas_are_closed(tmp_path: Path) -> None:
    for msg_type in MESSAGE_TYPES:
        schema = schema_for(msg_type)
        assert schema["additionalProperties"] is False
        assert schema["title"] == msg_type
    main(["--out", str(tmp_path)])
    assert stale(tmp_path) == []
    json.loads((tmp_path / "free_text.json").read_text(encoding="utf-8"))
    (tmp_path / "free_text.json").write_text("{}", encoding="utf-8")
    assert stale(tmp_path) == ["free_text"]
    assert main(["--check", "--out", str(tmp_path)]) == 1
