"""A peer shows back the largest claim of our log it holds that we signed ourselves, a tree head
or a DELIVERED receipt's tree claim: a store restored from before a receipt it sent, but after
its last tree head reached the peer, still learns that it lost entries (hold.py, log_behind)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from hotline.core.envelope import ReceiptItem, ReceiptKind, new_id, sign_receipt
from hotline.core.treehead import sign_tree_head, verify_held_head
from hotline.core.witness import cosign
from hotline.errors import ErrorCode, VerificationError, WireError
from hotline.link.delivery import PeerLink
from hotline.node.home import NodeHome
from hotline.store.schema import security_events
from hotline.transcript import hold
from hotline.transcript.heads import largest_peer_head, record_peer_head

NOW = datetime.now(UTC)
ROOT = hashlib.sha256(b"washington's log at 7").digest()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, NodeHome]]:
    homes = {
        name: NodeHome.init(tmp_path / name, name=name, listen="127.0.0.1:1", display_names={})
        for name in ("washington", "moscow")
    }
    for name, home in homes.items():
        for other_name, other in homes.items():
            if other_name != name:
                card = other.card(NOW)
                home.add_peer(card, card.fingerprint, NOW)
    yield homes
    for home in homes.values():
        home.close()


def _link(homes: dict[str, NodeHome], owner: str, peer: str) -> PeerLink:
    home = homes[owner]
    return PeerLink(
        identity=home.identity,
        store=home.store,
        peer=home.peer_card(peer),
        receive=None,  # type: ignore[arg-type]
        retry_cap_s=1,
        heartbeat_interval_s=60,
    )


def _receipt(home: NodeHome, *, tree_size: int | None = 7, kind=ReceiptKind.DELIVERED) -> bytes:
    item = ReceiptItem(
        id=new_id(NOW), seq=1, envelope_hash="0" * 64, signed_hash="0" * 64, leaf_index=0
    )
    return sign_receipt(
        home.identity,
        to="moscow",
        receipt_id=new_id(NOW),
        created=NOW,
        kind=kind,
        items=[item],
        tree_size=tree_size,
        tree_root=None if tree_size is None else ROOT,
    )


def _moscow_holds(homes, *, size: int, kind: str, evidence: bytes) -> None:
    with homes["moscow"].store.write() as conn:
        record_peer_head(
            conn,
            peer="washington",
            size=size,
            root=hashlib.sha256(evidence).digest() if kind != "receipt" else ROOT,
            kind=kind,
            evidence=evidence,
            now_us=1,
        )


def test_a_receipt_beyond_the_restored_log_puts_the_store_on_hold(world) -> None:
    washington = world["washington"]
    head = sign_tree_head(washington.identity, size=3, root=b"\x01" * 32, time=NOW)
    _moscow_holds(world, size=3, kind="tree-head", evidence=head.statement)
    _moscow_holds(world, size=7, kind="receipt", evidence=_receipt(washington))
    # A witness's cosignature of a larger size is not shown: washington could not check it.
    helsinki = NodeHome.init(
        washington.dir.parent / "helsinki", name="helsinki", listen="127.0.0.1:1", display_names={}
    )
    try:
        cosigned = cosign(helsinki.identity, log="washington", size=9, root=ROOT, time=NOW)
    finally:
        helsinki.close()
    _moscow_holds(world, size=9, kind="cosigned", evidence=cosigned.statement)
    with world["moscow"].store.read() as conn:
        shown = largest_peer_head(conn, "washington")
    assert shown is not None and (shown.size, shown.kind) == (7, "receipt")

    beat = _link(world, "moscow", "washington").make_heartbeat(
        datetime.now(UTC), nonce="n", echo=None, next_expected=1
    )
    _link(world, "washington", "moscow").open_heartbeat(beat, datetime.now(UTC))

    with washington.store.read() as conn:
        state = hold.current(conn)
        details = list(
            conn.execute(
                select(security_events.c.detail).where(security_events.c.code == "log_behind")
            ).scalars()
        )
    assert state is not None and state.reason == hold.LOST_TAIL
    assert len(details) == 1 and "our signed tree head of size 7" in details[0]


def test_a_held_head_is_a_tree_head_or_a_delivered_receipt_of_ours(world) -> None:
    washington, moscow = world["washington"], world["moscow"]
    key = washington.identity.signing.public
    held = verify_held_head(_receipt(washington), key, log="washington")
    assert (held.size, held.root, held.time) == (
        7,
        ROOT,
        NOW.replace(microsecond=held.time.microsecond),
    )
    with pytest.raises(WireError):  # a receipt with no tree claim says nothing of the log
        verify_held_head(_receipt(washington, tree_size=None), key, log="washington")
    with pytest.raises(WireError):
        verify_held_head(_receipt(washington, kind=ReceiptKind.ACKNOWLEDGED), key, log="washington")
    with pytest.raises(VerificationError) as wrong_log:
        verify_held_head(_receipt(washington), key, log="moscow")
    assert wrong_log.value.code == ErrorCode.HEADER_MISMATCH
    with pytest.raises(VerificationError):  # signed by another key
        verify_held_head(_receipt(moscow), key, log="washington")
    card = washington.card(NOW)
    with pytest.raises(VerificationError) as wrong_purpose:
        verify_held_head(card.statement, key, log="washington")
    assert wrong_purpose.value.code == ErrorCode.WRONG_PURPOSE
