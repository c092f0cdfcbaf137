"""``hotline deconflict`` through its Typer sub-app, in-process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from deconfliction_helpers import T0, collection, feature, rect
from typer.testing import CliRunner

from hotline import deconfliction
from hotline.cli import deconflict

runner = CliRunner()


def write(path: Path, obj: Any) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    q = write(
        tmp_path / "q.geojson",
        collection(
            feature("Q1", rect(36, 33, 36.2, 33.2), lo=1000, hi=3000, t0=10, t1=12),
            feature("Q2", {"type": "Point", "coordinates": [40, 35]}, radius_m=1000),
        ),
    )
    a = write(
        tmp_path / "a.geojson",
        collection(
            feature("A1", rect(36.1, 33.1, 36.3, 33.3), lo=3000, hi=4000, t0=11, t1=13),
            feature("A2", rect(36.2, 33, 36.4, 33.2), lo=0, hi=500, t0=10, t1=12),
        ),
    )
    return q, a


def test_check_against_a_file_prints_json(files: tuple[Path, Path]) -> None:
    q, a = files
    res = runner.invoke(deconflict.app, ["check", str(q), "--against", str(a), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [(c["query"], c["active"]) for c in out] == [("Q1", "A1")]
    c = out[0]
    assert c["time_start"] == "2026-03-01T11:00:00Z" and c["time_end"] == "2026-03-01T12:00:00Z"
    assert (c["altitude_lower"], c["altitude_upper"]) == (3000, 3000)
    assert c["area_m2"] > 1e7


def test_check_table_and_near_misses(files: tuple[Path, Path]) -> None:
    q, a = files
    res = runner.invoke(
        deconflict.app,
        ["check", str(q), "--against", str(a), "--near-nm", "5", "--near-ft", "2000"],
    )
    assert res.exit_code == 0, res.output
    assert "1 conflict(s)" in res.stdout


def test_check_reads_volume4d(tmp_path: Path, files: tuple[Path, Path]) -> None:
    q, a = files
    v4d = write(
        tmp_path / "q.json",
        deconfliction.to_volume4d(deconfliction.parse_geojson(json.loads(q.read_text()))),
    )
    res = runner.invoke(deconflict.app, ["check", str(v4d), "--against", str(a), "--json"])
    assert [(c["query"], c["active"]) for c in json.loads(res.stdout)] == [("Q1", "A1")]


def test_bad_input_names_the_feature(tmp_path: Path, files: tuple[Path, Path]) -> None:
    _, a = files
    bad = write(
        tmp_path / "bad.geojson", collection(feature("B7", rect(36, 33, 36.2, 33.2), lo=9, hi=1))
    )
    res = runner.invoke(deconflict.app, ["check", str(bad), "--against", str(a), "--json"])
    assert res.exit_code == 2
    err = json.loads(res.stderr)["error"]
    assert err["code"] == "invalid_input"
    assert err["fields"] == {"feature": "B7", "field": "altitude_lower"}
    res = runner.invoke(
        deconflict.app, ["check", str(tmp_path / "missing.json"), "--against", str(a)]
    )
    assert res.exit_code == 2
    assert "cannot read" in res.stderr
    notjson = tmp_path / "x.json"
    notjson.write_text("{", encoding="utf-8")
    res = runner.invoke(deconflict.app, ["check", str(notjson), "--against", str(a)])
    assert res.exit_code == 2 and "not JSON" in res.stderr
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    res = runner.invoke(deconflict.app, ["check", str(deep), "--against", str(a)])
    assert res.exit_code == 2 and "nests too deeply" in res.stderr


def test_node_commands_with_dir_and_env(tmp_path: Path, files: tuple[Path, Path]) -> None:
    q, a = files
    node = tmp_path / "node"
    node.mkdir()
    now = ["--now", T0]
    res = runner.invoke(
        deconflict.app, ["add", str(a), "--dir", str(node), "--owner", "Moscow", *now, "--json"]
    )
    assert res.exit_code == 0, res.output
    assert [x["id"] for x in json.loads(res.stdout)["added"]] == ["A1", "A2"]
    env = {"HOTLINE_DIR": str(node)}
    res = runner.invoke(deconflict.app, ["check", str(q), "--json", *now], env=env)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [(c["query"], c["active"], c["kind"]) for c in out] == [("Q1", "A1", "own_vs_peer")]
    res = runner.invoke(deconflict.app, ["list", "--json", *now], env=env)
    assert [(r["owner"], r["id"], r["version"]) for r in json.loads(res.stdout)] == [
        ("Moscow", "A1", 1),
        ("Moscow", "A2", 1),
    ]
    res = runner.invoke(deconflict.app, ["export", "--format", "volume4d", *now], env=env)
    assert [v["id"] for v in json.loads(res.stdout)] == ["A1", "A2"]
    res = runner.invoke(deconflict.app, ["export", "--format", "geojson", *now], env=env)
    fc = json.loads(res.stdout)
    assert [f["properties"]["owner"] for f in fc["features"]] == ["Moscow", "Moscow"]
    res = runner.invoke(deconflict.app, ["remove", "A1", "--owner", "Moscow", *now], env=env)
    assert res.exit_code == 0, res.output
    res = runner.invoke(deconflict.app, ["remove", "A1", "--owner", "Moscow", *now], env=env)
    assert res.exit_code == 6  # not found
    res = runner.invoke(deconflict.app, ["list", "--json", *now], env=env)
    assert [r["id"] for r in json.loads(res.stdout)] == ["A2"]


def test_check_without_against_or_dir_is_refused(files: tuple[Path, Path]) -> None:
    q, _ = files
    res = runner.invoke(deconflict.app, ["check", str(q)], env={"HOTLINE_DIR": ""})
    assert res.exit_code == 2
    assert "--dir" in res.stderr


def test_public_api_is_listed() -> None:
    for name in deconfliction.__all__:
        assert hasattr(deconfliction, name), name
    public = {n for n in dir(deconfliction) if not n.startswith("_")}
    assert public - set(deconfliction.__all__) <= {"annotations"}
