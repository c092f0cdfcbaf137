"""``hotline case`` and ``hotline taxii`` in-process, on two homes linked without HTTP."""

from __future__ import annotations

import csv
import io
import json
import sys
from typing import Any

import pytest
from referral_helpers import deliver, sample_bundle

from hotline.cli import main
from hotline.node.home import NodeHome


def run(capsys: pytest.CaptureFixture[str], *args: str, stdin: str | None = None) -> Any:
    old = sys.stdin
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    try:
        code = main(list(args))
    finally:
        sys.stdin = old
    out, err = capsys.readouterr()
    return code, out, err


def test_case_commands(
    homes: dict[str, NodeHome], tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    w, m = homes["washington"], homes["moscow"]
    bundle = tmp_path / "b.json"
    bundle.write_text(json.dumps(sample_bundle()))
    wd, md = ("--dir", str(w.dir)), ("--dir", str(m.dir))
    code, out, err = run(
        capsys, "case", "open", *wd, "--to", "moscow", "--bundle", str(bundle),
        "--request", "investigate", "--deadline", "2d", "--tlp", "green",
    )  # fmt: skip
    assert code == 0, err
    case_id = out.strip()
    deliver(w, m)

    code, out, _ = run(capsys, "case", "list", *md, "--json")
    assert [c["id"] for c in json.loads(out)] == [case_id]
    code, out, _ = run(capsys, "case", "list", *md)
    assert code == 0 and "received" in out
    code, out, _ = run(capsys, "case", "show", case_id, *md)
    assert code == 0 and "TLP:GREEN" in out

    code, _, err = run(capsys, "case", "update", case_id, *md, "--state", "declined")
    assert code == 2 and "reason" in err
    code, _, err = run(
        capsys, "case", "update", case_id, *md, "--state", "declined", "--reason", "Not ours."
    )
    assert code == 0, err
    deliver(m, w)
    code, out, _ = run(capsys, "case", "show", case_id, *wd, "--json")
    assert json.loads(out)["state"] == "declined"

    code, out, _ = run(capsys, "case", "report", *wd, "--peer", "moscow", "--format", "json")
    month = json.loads(out)["months"][0]
    assert (month["direction"], month["referrals"], month["declined"]) == ("sent", 1, 1.0)
    code, out, _ = run(capsys, "case", "report", *wd, "--peer", "moscow", "--format", "csv")
    assert next(csv.DictReader(io.StringIO(out)))["declined"] == "1.0"
    code, out, _ = run(capsys, "case", "report", *wd, "--peer", "moscow", "--since", "2000-01-01")
    assert code == 0 and "Referrals with moscow" in out
    code, _, err = run(capsys, "case", "report", *wd, "--peer", "moscow", "--since", "soon")
    assert code == 2

    code, _, err = run(capsys, "case", "show", "nope", *wd)
    assert code == 6
    code, _, err = run(
        capsys, "case", "open", *wd, "--to", "moscow", "--bundle", str(bundle),
        "--request", "investigate", "--deadline", "tomorrow",
    )  # fmt: skip
    assert code == 2 and "--deadline" in err


def test_taxii_commands(homes: dict[str, NodeHome], capsys: pytest.CaptureFixture[str]) -> None:
    d = ("--dir", str(homes["moscow"].dir))
    code, _, err = run(capsys, "taxii", "user", "add", "misp", *d)
    assert code == 2 and "--password-stdin" in err
    code, _, err = run(
        capsys, "taxii", "user", "add", "misp", *d, "--password-stdin", stdin="long password 1\n"
    )
    assert code == 0, err
    code, out, _ = run(capsys, "taxii", "user", "list", *d, "--json")
    assert [u["name"] for u in json.loads(out)] == ["misp"]
    code, out, _ = run(capsys, "taxii", "collections", *d, "--json")
    assert [c["title"] for c in json.loads(out)] == [
        "Referrals received from washington",
        "Referrals sent to washington",
    ]
    assert run(capsys, "taxii", "user", "remove", "misp", *d)[0] == 0
    assert run(capsys, "taxii", "user", "remove", "misp", *d)[0] == 6
