"""Two real node processes: a referral and its case over the link via the CLI, and the
receiving node's TAXII 2.1 server pulled with the OASIS taxii2-client."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from referral_helpers import sample_bundle

from hotline.cli import main

pytestmark = pytest.mark.integration

_spec = importlib.util.spec_from_file_location(
    "integration_conftest", Path(__file__).parents[1] / "integration" / "conftest.py"
)
assert _spec is not None and _spec.loader is not None
integration = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(integration)

PASSWORD = "correct horse battery staple"
WAIT_S = 30.0


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[dict[str, Any]]:
    # Plain HTTP: the TAXII client (taxii2-client, requests) does not know the pinned certificate.
    homes = integration.make_linked_homes(
        tmp_path, ["washington", "moscow"], tls=False, retry_cap_s=1.0, heartbeat_interval_s=2.0
    )
    procs = {name: integration.NodeProcess(home, tmp_path) for name, home in homes.items()}
    try:
        for proc in procs.values():
            proc.start()
        yield procs
    finally:
        for proc in procs.values():
            proc.stop()
        for home in homes.values():
            home.close()


def cli(capsys: pytest.CaptureFixture[str], *args: str, stdin: str | None = None) -> Any:
    old = sys.stdin
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    try:
        code = main(list(args))
    finally:
        sys.stdin = old
    out, err = capsys.readouterr()
    return code, out, err


def wait_for(check: Any, what: str) -> Any:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def case_json(capsys: pytest.CaptureFixture[str], home_dir: Path, case_id: str) -> Any:
    code, out, _ = cli(capsys, "case", "show", case_id, "--dir", str(home_dir), "--json")
    return json.loads(out) if code == 0 else None


def test_referral_case_and_taxii(
    nodes: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from stix2validator import ValidationOptions, validate_parsed_json
    from taxii2client.v21 import Server, as_pages

    w_dir, m_dir = nodes["washington"].home.dir, nodes["moscow"].home.dir
    bundle_file = tmp_path / "bundle.json"
    bundle_file.write_text(json.dumps(sample_bundle(30)))

    # Refer: the CLI prints the case id (--json: an object with "id").
    code, out, err = cli(
        capsys,
        "case", "open", "--dir", str(w_dir), "--to", "moscow", "--bundle", str(bundle_file),
        "--request", "takedown", "--request", "preserve_evidence", "--deadline", "72h", "--json",
    )  # fmt: skip
    assert code == 0, err
    case_id = json.loads(out)["id"]

    received = wait_for(lambda: case_json(capsys, m_dir, case_id), "the referral at moscow")
    assert received["state"] == "referred" and received["direction"] == "in"
    assert received["requested_actions"] == ["takedown", "preserve_evidence"]

    # Moscow acknowledges; washington sees it (a signed message over the link).
    code, _, err = cli(
        capsys, "case", "update", case_id, "--dir", str(m_dir), "--state", "acknowledged",
        "--note", "Received; the hosting provider is being contacted.",
    )  # fmt: skip
    assert code == 0, err
    wait_for(
        lambda: (case_json(capsys, w_dir, case_id) or {}).get("state") == "acknowledged",
        "the acknowledgement at washington",
    )
    # Washington may not acknowledge its own referral: a typed error and exit code 5.
    code, _, err = cli(
        capsys, "case", "update", case_id, "--dir", str(w_dir), "--state", "investigating"
    )
    assert code == 5 and "invalid_transition" in err

    # TAXII at moscow: discovery, the collection of referrals received from washington.
    code, _, err = cli(
        capsys, "taxii", "user", "add", "misp", "--dir", str(m_dir), "--password-stdin",
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert code == 0, err
    endpoint = nodes["moscow"].endpoint
    server = Server(f"{endpoint}/taxii2/", user="misp", password=PASSWORD)
    assert server.title == "hotline cyber referrals"
    root = server.api_roots[0]
    assert root.versions == ["application/taxii+json;version=2.1"]
    by_title = {c.title: c for c in root.collections}
    collection = by_title["Referrals received from washington"]
    assert collection.can_read and not collection.can_write

    pages = list(as_pages(collection.get_objects, per_request=10))
    objects = [o for page in pages for o in page.get("objects", [])]
    assert len(pages) == 4 and len(objects) == 37  # 6 + 30 indicators + the TLP marking
    assert len({o["id"] for o in objects}) == 37
    served = {"type": "bundle", "id": "bundle--3f0c9c55-2e0b-4a65-9a7c-4a4b9e62f1a5"}
    served["objects"] = objects  # type: ignore[assignment]
    result = validate_parsed_json(served, ValidationOptions(version="2.1"))
    assert result.is_valid, [str(e) for e in result.errors]
    amber = "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"
    assert all(
        amber in o.get("object_marking_refs", [])
        for o in objects
        if o["type"] != "marking-definition"
    )

    manifest = collection.get_manifest()
    assert len(manifest["objects"]) == 37
    last_added = manifest["objects"][-1]["date_added"]
    assert collection.get_objects(added_after=last_added).get("objects") is None
    one = collection.get_object(objects[0]["id"])
    assert one["objects"][0]["id"] == objects[0]["id"]

    # Wrong password: 401 with a challenge; a media type we do not speak: 406.
    denied = httpx.get(f"{endpoint}/taxii2/", auth=("misp", "wrong password!!"))
    assert denied.status_code == 401 and "Basic" in denied.headers["www-authenticate"]
    refused = httpx.get(
        f"{endpoint}/taxii2/", auth=("misp", PASSWORD), headers={"accept": "text/html"}
    )
    assert refused.status_code == 406


def test_bad_bundles_are_refused_and_the_node_stays_up(
    nodes: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w_dir = nodes["washington"].home.dir
    base = ["case", "open", "--dir", str(w_dir), "--to", "moscow", "--deadline", "72h"]

    huge = sample_bundle(0)
    huge["objects"] = [
        {"type": "ipv4-addr", "id": f"ipv4-addr--{i:08x}-0000-4000-8000-000000000000"}
        for i in range(100_000)
    ]
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(huge))
    code, _, err = cli(capsys, *base, "--bundle", str(path), "--request", "investigate")
    assert code == 2 and "too_large" in err

    broken = sample_bundle(1)
    broken["objects"][-1]["pattern"] = "[ipv4-addr:value = "
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    code, _, err = cli(capsys, *base, "--bundle", str(path), "--request", "investigate")
    assert code == 2 and "stix_invalid" in err

    path = tmp_path / "garbage.json"
    path.write_bytes(b'{"type": "bundle", "objects": [')
    code, _, err = cli(capsys, *base, "--bundle", str(path), "--request", "investigate")
    assert code == 2 and "malformed" in err

    good = tmp_path / "good.json"
    good.write_text(json.dumps(sample_bundle(1)))
    code, _, err = cli(
        capsys, *base, "--bundle", str(good), "--request", "investigate", "--tlp", "white"
    )
    assert code != 0 and "white" in err

    health = httpx.get(f"{nodes['washington'].endpoint}/healthz", timeout=2.0)
    assert health.status_code == 200
