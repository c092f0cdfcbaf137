"""Bundle checks under named limits, TLP marking, and the keyset-paginated TAXII store."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from referral_helpers import bundle_bytes, sample_bundle
from sqlalchemy import create_engine

from hotline.compose.catalog import Tlp
from hotline.errors import ErrorCode, InputError
from hotline.referrals import stix
from hotline.referrals.collections import (
    MAX_PAGE,
    Filters,
    add_objects,
    decode_next,
    make_filters,
    read_page,
)
from hotline.store.db import migrate


def test_a_valid_bundle_is_marked_and_passes() -> None:
    marked = stix.stamp_tlp(stix.parse_bundle_bytes(bundle_bytes(sample_bundle())), Tlp.GREEN)
    checked = stix.check_bundle(marked, Tlp.GREEN)
    green = stix.TLP_MARKING_IDS[Tlp.GREEN]
    assert checked.objects[0]["id"] == green
    assert all(green in o["object_marking_refs"] for o in checked.objects[1:])
    # Stamping twice changes nothing.
    assert stix.stamp_tlp(marked, Tlp.GREEN) == marked


def test_a_bundle_of_a_hundred_thousand_objects_is_refused_at_once() -> None:
    huge = {"type": "bundle", "id": "bundle--x", "objects": [{"type": "x", "id": "x"}] * 100_000}
    started = time.monotonic()
    with pytest.raises(InputError) as info:
        stix.check_shape(huge)
    assert info.value.code is ErrorCode.TOO_LARGE
    with pytest.raises(InputError) as info:
        stix.parse_bundle_bytes(json.dumps(huge).encode())
    assert info.value.code is ErrorCode.TOO_LARGE
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"[1, 2", ErrorCode.MALFORMED),
        (b'{"type": "bundle", "type": "bundle"}', ErrorCode.MALFORMED),
        (b'{"type": "bundle", "objects": [NaN]}', ErrorCode.MALFORMED),
        (b'{"type": "report"}', ErrorCode.STIX_INVALID),
        (b'{"type": "bundle", "objects": []}', ErrorCode.STIX_INVALID),
        (b'{"type": "bundle", "objects": [{"type": "indicator"}]}', ErrorCode.STIX_INVALID),
        (b"[" * 100_000, ErrorCode.MALFORMED),
        (b" " * (stix.MAX_BUNDLE_BYTES + 1), ErrorCode.TOO_LARGE),
    ],
)
def test_malformed_bundles(data: bytes, code: ErrorCode) -> None:
    with pytest.raises(InputError) as info:
        stix.parse_bundle_bytes(data)
    assert info.value.code is code


def test_the_validators_findings_are_returned() -> None:
    bundle = sample_bundle(1)
    bundle["objects"][-1]["pattern"] = "[ipv4-addr:value = "
    bundle["objects"][0]["created"] = "yesterday"
    with pytest.raises(InputError) as info:
        stix.validate_stix(bundle)
    assert info.value.code is ErrorCode.STIX_INVALID
    findings = " ".join(str(v) for v in info.value.fields.values())
    assert "Pattern failed to validate" in findings and "created" in findings


def test_unmarked_or_differently_marked_bundles_are_refused() -> None:
    bundle = stix.check_shape(sample_bundle())
    with pytest.raises(InputError):
        stix.check_tlp(bundle, Tlp.AMBER)
    red = stix.stamp_tlp(bundle, Tlp.RED)
    with pytest.raises(InputError):
        stix.check_tlp(red, Tlp.AMBER)
    with pytest.raises(InputError):
        stix.stamp_tlp(red, Tlp.AMBER)


# -- the TAXII object store ------------------------------------------------------------------


@pytest.fixture
def conn() -> Any:
    engine = create_engine("sqlite+pysqlite:///:memory:")
    migrate(engine)
    with engine.begin() as connection:
        yield connection


def _obj(i: int, modified: str = "2026-11-18T00:00:00.000Z") -> dict[str, Any]:
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--00000000-0000-4000-8000-{i:012d}",
        "created": "2026-11-18T00:00:00.000Z",
        "modified": modified,
    }


def _all(conn: Any, filters: Filters, limit: int) -> list[list[str]]:
    pages, after = [], None
    while True:
        page = read_page(conn, "c", filters, limit=limit, after=after)
        pages.append([r.stix_id for r in page.rows])
        if not page.more:
            return pages
        assert page.next is not None
        after = decode_next(page.next)


def test_pages_follow_the_order_of_addition(conn: Any) -> None:
    for batch in range(5):
        add_objects(conn, "c", "case", [_obj(batch * 10 + i) for i in range(10)], 1_000 + batch)
    add_objects(conn, "other", "case", [_obj(i) for i in range(7)], 5)
    pages = _all(conn, Filters(), 7)
    assert [len(p) for p in pages] == [7] * 7 + [1]
    assert [x for p in pages for x in p] == [_obj(i)["id"] for i in range(50)]
    after = make_filters(
        added_after="1970-01-01T00:00:00.001002Z",
        match_id=None,
        match_type=None,
        match_version=None,
        match_spec_version=None,
    )
    assert [x for p in _all(conn, after, 7) for x in p] == [_obj(i)["id"] for i in range(30, 50)]
    assert read_page(conn, "c", Filters(), limit=10**9, after=None).rows.__len__() == 50
    assert MAX_PAGE == 1_000


def test_clock_going_back_keeps_the_order(conn: Any) -> None:
    add_objects(conn, "c", "case", [_obj(1)], 2_000)
    add_objects(conn, "c", "case", [_obj(2)], 1_000)
    rows = read_page(conn, "c", Filters(), limit=10, after=None).rows
    assert [r.stix_id for r in rows] == [_obj(1)["id"], _obj(2)["id"]]
    assert rows[0].added_us == rows[1].added_us == 2_000


def test_versions_latest_first_and_duplicates(conn: Any) -> None:
    v1, v2, v3 = (f"2026-11-1{d}T00:00:00.000Z" for d in (7, 8, 9))
    assert add_objects(conn, "c", "case", [_obj(1, v2), _obj(1, v1)], 10) == 2
    assert add_objects(conn, "c", "case", [_obj(1, v3), _obj(1, v2)], 20) == 1
    assert add_objects(conn, "c", "case", [_obj(1, "2026-11-19T00:00:00Z")], 30) == 1

    def versions(match: str) -> list[str]:
        filters = Filters(versions=tuple(match.split(",")))
        return sorted(r.version for r in read_page(conn, "c", filters, limit=10, after=None).rows)

    assert versions("last") == ["2026-11-19T00:00:00.000Z"]
    assert versions("first") == [v1]
    assert versions("first,last") == [v1, "2026-11-19T00:00:00.000Z"]
    assert len(versions("all")) == 4
    assert versions(v2) == [v2]


def test_bad_tokens_and_timestamps() -> None:
    for token in ("", "1", "a.b", "1.2.3", "9" * 30 + ".1"):
        with pytest.raises(InputError):
            decode_next(token)
    with pytest.raises(InputError):
        make_filters(
            added_after="2026-11-18T00:00:00",
            match_id=None,
            match_type=None,
            match_version=None,
            match_spec_version=None,
        )
    with pytest.raises(InputError):
        make_filters(
            added_after=None,
            match_id=",".join(["x"] * 101),
            match_type=None,
            match_version=None,
            match_spec_version=None,
        )
