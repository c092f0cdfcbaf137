"""The registry: persistence, reload, versions and stale plans, notifications, expiry."""

from __future__ import annotations

from pathlib import Path

import pytest
from deconfliction_helpers import HOUR_US, T0_US, feature, rect, volumes

from hotline.deconfliction import (
    OWN,
    ConflictKind,
    Registry,
    StalePlanError,
    assess_notification,
)
from hotline.errors import NotFoundError, ProtocolError
from hotline.store.db import create_store_engine, is_current, migrate

NOW = T0_US


def test_migration_reaches_every_head(tmp_path: Path, store_url) -> None:
    db = create_store_engine(store_url(tmp_path / "store.sqlite"))
    migrate(db)
    assert is_current(db)


def test_add_list_remove_and_reload(tmp_path: Path, store_url) -> None:
    reg = Registry.open(store_url(tmp_path / "store.sqlite"), now_us=NOW)
    stored = reg.add(
        volumes(
            feature("a", rect(35, 33, 36, 34)),
            feature("c", {"type": "Point", "coordinates": [36, 34]}, radius_m=3000),
        ),
        now_us=NOW,
    )
    assert [(v.id, v.version) for v in stored] == [("a", 1), ("c", 1)]
    again = reg.add(volumes(feature("a", rect(35, 33, 35.5, 33.5))), now_us=NOW)
    assert again[0].version == 2
    reg.add(volumes(feature("m1", rect(35.2, 33.2, 35.3, 33.3)), owner="Moscow"), now_us=NOW)
    assert [(v.owner, v.id) for v in reg.list()] == [("own", "a"), ("own", "c"), ("Moscow", "m1")]

    reopened = Registry.open(store_url(tmp_path / "store.sqlite"), now_us=NOW)
    by_key = {v.key: v for v in reopened.list()}
    assert by_key[("own", "a")].version == 2
    assert by_key[("own", "a")].footprint.equals(again[0].footprint)
    assert by_key[("own", "c")].shape.radius_m == 3000
    assert by_key[("own", "c")].geometry == {"type": "Point", "coordinates": [36, 34]}
    assert len(reopened.engine.conflicts(reopened.list(owner="Moscow"))) == 1

    reopened.remove(("own", "a"), now_us=NOW)
    with pytest.raises(NotFoundError):
        reopened.remove(("own", "a"), now_us=NOW)
    third = Registry.open(store_url(tmp_path / "store.sqlite"), now_us=NOW)
    assert ("own", "a") not in {v.key for v in third.list()}
    # A removed id that comes back continues its versions.
    back = third.add(volumes(feature("a", rect(35, 33, 36, 34))), now_us=NOW)
    assert back[0].version == 4


def test_expired_volumes_are_not_loaded_and_expire_in_memory(tmp_path: Path, store_url) -> None:
    reg = Registry.open(store_url(tmp_path / "store.sqlite"), now_us=NOW)
    reg.add(
        volumes(
            feature("short", rect(35, 33, 36, 34), t0=0, t1=1),
            feature("long", rect(35, 33, 36, 34), t0=0, t1=10),
        ),
        now_us=NOW,
    )
    assert [v.id for v in reg.expire(NOW + HOUR_US)] == ["short"]
    assert [v.id for v in reg.list()] == ["long"]
    later = Registry.open(store_url(tmp_path / "store.sqlite"), now_us=NOW + 2 * HOUR_US)
    assert [v.id for v in later.list()] == ["long"]


def test_plan_with_a_current_view_is_filed_and_its_conflicts_returned(
    tmp_path: Path, store_url
) -> None:
    reg = Registry.open(store_url(tmp_path / "store.sqlite"), now_us=NOW)
    [theirs] = reg.add(volumes(feature("m1", rect(35, 33, 36, 34)), owner="Moscow"), now_us=NOW)
    plan = volumes(feature("p1", rect(35.5, 33.5, 36.5, 34.5)))
    result = reg.file_plan(plan, seen={theirs.key: theirs.version}, now_us=NOW)
    assert [(v.id, v.version) for v in result.volumes] == [("p1", 1)]
    assert [(c.active.id, c.kind) for c in result.conflicts] == [("m1", ConflictKind.OWN_VS_PEER)]


def test_plan_on_a_stale_view_is_refused_with_what_changed(tmp_path: Path, store_url) -> None:
    reg = Registry.open(store_url(tmp_path / "store.sqlite"), now_us=NOW)
    [m1] = reg.add(volumes(feature("m1", rect(35, 33, 36, 34)), owner="Moscow"), now_us=NOW)
    plan = volumes(feature("p1", rect(35.5, 33.5, 36.5, 34.5)))
    # Not stating the conflicting volume at all.
    with pytest.raises(StalePlanError) as e:
        reg.file_plan(plan, seen={}, now_us=NOW)
    assert e.value.changed == [
        {"owner": "Moscow", "id": "m1", "seen_version": None, "current_version": 1}
    ]
    assert isinstance(e.value, ProtocolError)
    # Moscow changes m1 after we looked at version 1.
    reg.add(volumes(feature("m1", rect(35.2, 33.2, 36, 34)), owner="Moscow"), now_us=NOW)
    with pytest.raises(StalePlanError) as e:
        reg.file_plan(plan, seen={m1.key: 1}, now_us=NOW)
    assert e.value.changed[0]["current_version"] == 2
    assert reg.list(owner=OWN) == []  # nothing was stored
    # Changing our own plan needs the version we replace.
    reg.file_plan(plan, seen={m1.key: 2}, now_us=NOW)
    with pytest.raises(StalePlanError) as e:
        reg.file_plan(plan, seen={m1.key: 2}, now_us=NOW)
    assert e.value.changed == [
        {"owner": "own", "id": "p1", "seen_version": None, "current_version": 1}
    ]
    done = reg.file_plan(plan, seen={m1.key: 2, ("own", "p1"): 1}, now_us=NOW)
    assert done.volumes[0].version == 2
    # A volume seen but since removed counts as a change too.
    reg.remove(m1.key, now_us=NOW)
    with pytest.raises(StalePlanError) as e:
        reg.file_plan(plan, seen={m1.key: 2, ("own", "p1"): 2}, now_us=NOW)
    assert e.value.changed == [
        {"owner": "Moscow", "id": "m1", "seen_version": 2, "current_version": None}
    ]


def test_notification_raises_conflicts_and_drafts_a_response(tmp_path: Path, store_url) -> None:
    reg = Registry.open(store_url(tmp_path / "store.sqlite"), now_us=NOW)
    reg.add(
        volumes(feature("ours", rect(35, 33, 35.2, 33.2), lo=1000, hi=3000, t0=0, t1=4)), now_us=NOW
    )
    reg.add(
        volumes(feature("k1", rect(35.1, 33.1, 35.3, 33.3), hi=9000, t1=9), owner="Ankara"),
        now_us=NOW,
    )
    notified = volumes(
        feature("m1", rect(35.1, 33.1, 35.3, 33.3), lo=2000, hi=5000, t0=2, t1=6),
        feature("m2", rect(40, 33, 41, 34)),
    )
    a = reg.receive_notification("Moscow", notified, now_us=NOW)
    assert [(c.query.id, c.active.id, c.kind) for c in a.conflicts] == [
        ("m1", "k1", ConflictKind.PEER_VS_PEER),
        ("m1", "ours", ConflictKind.OWN_VS_PEER),
    ]
    assert [c.active.id for c in a.actionable] == ["ours"]
    assert "your volume m1 (version 1) and our volume ours (version 1)" in a.draft_response
    assert "k1" not in a.draft_response  # another peer's activity is not ours to disclose
    assert "2026-03-01T02:00:00Z to 2026-03-01T04:00:00Z" in a.draft_response
    assert {v.owner for v in reg.list(owner="Moscow")} == {"Moscow"}
    with pytest.raises(ProtocolError):
        reg.receive_notification("own", notified, now_us=NOW)


def test_assess_without_conflicts() -> None:
    from hotline.deconfliction import Engine

    engine = Engine()
    engine.add(volumes(feature("ours", rect(35, 33, 35.2, 33.2))))
    a = assess_notification(engine, "Moscow", volumes(feature("m", rect(40, 33, 41, 34))))
    assert a.conflicts == []
    assert "does not conflict" in a.draft_response
    assert a.volumes[0].owner == "Moscow"
