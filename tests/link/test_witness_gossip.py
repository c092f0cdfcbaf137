"""Heartbeats carry the latest witness cosignatures of their author's log (threat W1): the
recipient keeps each, from a witness it knows and checked, as a head of the peer's log, so a
witness shown another history than the recipient holds is an equivocation alarm."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from hotline.core.witness import cosign
from hotline.link.delivery import PeerLink
from hotline.node.home import NodeHome
from hotline.store.schema import security_events
from hotline.transcript.heads import peer_heads, record_peer_head
from hotline.transcript.witnessing import record_cosignature

NOW = datetime.now(UTC)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, NodeHome]]:
    homes = {
        name: NodeHome.init(
            tmp_path / name,
            name=name,
            listen="127.0.0.1:1",
            display_names={},
            role="witness" if name == "helsinki" else "node",
        )
        for name in ("washington", "moscow", "helsinki")
    }
    for name, home in homes.items():
        for other_name, other in homes.items():
            if other_name != name:
                card = other.card(NOW)
                home.add_peer(card, card.fingerprint, NOW)
    yield homes
    for home in homes.values():
        home.close()


def _link(homes: dict[str, NodeHome], owner: str, peer: str, *, witnesses: bool) -> PeerLink:
    home = homes[owner]
    link = PeerLink(
        identity=home.identity,
        store=home.store,
        peer=home.peer_card(peer),
        receive=None,  # type: ignore[arg-type]
        retry_cap_s=1,
        heartbeat_interval_s=60,
    )
    if witnesses:
        link.witness_keys = {"helsinki": home.peer_card("helsinki").signing_key}
    return link


def _root(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def _cosigned_by_helsinki(homes, *, log: str, size: int, root: bytes) -> None:
    """washington holds helsinki's cosignature (of ``log``'s head, normally its own)."""
    signature = cosign(homes["helsinki"].identity, log=log, size=size, root=root, time=NOW)
    with homes["washington"].store.write() as conn:
        record_cosignature(conn, signature, NOW)


def _beat(homes) -> bytes:
    link = _link(homes, "washington", "moscow", witnesses=False)
    return link.make_heartbeat(datetime.now(UTC), nonce="n", echo=None, next_expected=1)


def _heads(homes) -> list[tuple[int, bytes, str]]:
    with homes["moscow"].store.read() as conn:
        return [(h.size, h.root, h.kind) for h in peer_heads(conn, "washington")]


def _equivocations(homes) -> list[str]:
    with homes["moscow"].store.read() as conn:
        return list(
            conn.execute(
                select(security_events.c.detail).where(security_events.c.code == "equivocation")
            ).scalars()
        )


def test_a_cosigned_head_in_a_heartbeat_becomes_a_head_to_check(world):
    _cosigned_by_helsinki(world, log="washington", size=3, root=_root("three"))
    moscow = _link(world, "moscow", "washington", witnesses=True)
    moscow.open_heartbeat(_beat(world), datetime.now(UTC))
    assert (3, _root("three"), "cosigned") in _heads(world)
    assert _equivocations(world) == []


def test_a_witness_shown_another_history_raises_the_alarm(world):
    with world["moscow"].store.write() as conn:
        record_peer_head(
            conn,
            peer="washington",
            size=3,
            root=_root("what moscow was shown"),
            kind="tree-head",
            evidence=b"",
            now_us=0,
        )
    _cosigned_by_helsinki(world, log="washington", size=3, root=_root("what helsinki was shown"))
    moscow = _link(world, "moscow", "washington", witnesses=True)
    moscow.open_heartbeat(_beat(world), datetime.now(UTC))
    (alarm,) = _equivocations(world)
    assert "two heads of size 3" in alarm and "cosigned" in alarm


def test_unknown_witnesses_and_failing_cosignatures_are_passed_over(world):
    # A cosignature of another log (moscow's) shown as washington's: refused, heartbeat kept.
    _cosigned_by_helsinki(world, log="moscow", size=5, root=_root("moscow's"))
    moscow = _link(world, "moscow", "washington", witnesses=True)
    payload = moscow.open_heartbeat(_beat(world), datetime.now(UTC))
    assert len(payload.cosignatures) == 1
    assert all(kind != "cosigned" for _s, _r, kind in _heads(world))
    # A witness moscow does not know: nothing to check it with, nothing recorded.
    _cosigned_by_helsinki(world, log="washington", size=4, root=_root("four"))
    stranger = _link(world, "moscow", "washington", witnesses=False)
    stranger.open_heartbeat(_beat(world), datetime.now(UTC))
    assert all(kind != "cosigned" for _s, _r, kind in _heads(world))
