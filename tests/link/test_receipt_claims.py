"""A DELIVERED receipt that lies about where its author logged our message (threat P19).

The receipt signs a leaf_index and a tree (size, root). The receiving node cannot check the
index without the peer's log; ``hotline audit check`` does: it proves our message's inclusion at
the claimed index of the claimed tree with a proof the peer serves, and names a false claim.
Real keys and stores; the peer's log is read from its own store, as its link API would serve it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

import hotline.transcript as transcript
from hotline.core.envelope import (
    Kind,
    ReceiptItem,
    ReceiptKind,
    new_id,
    seal,
    sha256_hex,
    sign_receipt,
)
from hotline.errors import InputError
from hotline.link import inbox, outbox
from hotline.node.home import NodeHome
from hotline.store.messages import get_message, pending_outgoing
from hotline.store.schema import messages
from hotline.transcript.crosscheck import (
    ItemCheck,
    check_ours,
    cross_check_items,
    exchanged_statements,
    receipt_claims,
)
from hotline.transcript.heads import PeerHead

NOW = datetime(2026, 11, 26, 3, 12, tzinfo=UTC)


class StorePeerLog:
    """The peer's transcript answered from its store (what /v1/transcript/* serve)."""

    def __init__(self, home: NodeHome) -> None:
        self.home = home

    async def leaf_indexes(self, ref: str) -> list[int]:
        with self.home.store.read() as conn:
            return [leaf.index for leaf in transcript.leaves_by_ref(conn, ref)]

    async def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        with self.home.store.read() as conn:
            return transcript.inclusion_proof(conn, index, size)


def _send(w: NodeHome, text: str) -> str:
    return outbox.submit_message(
        w.store,
        w.identity,
        w.peer_card("moscow"),
        msg_type="free_text",
        priority="routine",
        body={"text": text, "lang": "en"},
        now=NOW,
        ttl=timedelta(hours=1),
    )


def _moscow_takes_but_keeps_its_receipt(w: NodeHome, m: NodeHome) -> None:
    """Moscow logs Washington's queued messages; its honest receipt never reaches Washington."""
    with w.store.read() as conn:
        envelopes = [o.envelope for o in pending_outgoing(conn, "moscow", 100)]
    result = inbox.receive(m.store, m.identity, m.peer_cards(), envelopes, now=NOW, source="t")
    assert all(o.status == "accepted" for o in result.outcomes)


def _lying_receipt(w: NodeHome, m: NodeHome, message_id: str, leaf_index: int) -> bytes:
    """A receipt Moscow signs for ``message_id`` (exact bytes, so the inbox accepts it) naming
    ``leaf_index`` of its real current tree."""
    with w.store.read() as conn:
        sent = conn.execute(
            select(messages.c.seq, messages.c.signed_hash, messages.c.envelope).where(
                messages.c.id == message_id
            )
        ).one()
    with m.store.read() as conn:
        size, root = transcript.size_and_root(conn)
    item = ReceiptItem(
        id=message_id,
        seq=sent.seq,
        envelope_hash=sha256_hex(bytes(sent.envelope)),
        signed_hash=sent.signed_hash,
        leaf_index=leaf_index,
    )
    receipt_id = new_id(NOW)
    statement = sign_receipt(
        m.identity,
        to="washington",
        receipt_id=receipt_id,
        created=NOW,
        kind=ReceiptKind.DELIVERED,
        items=[item],
        tree_size=size,
        tree_root=root,
    )
    return seal(
        kind=Kind.RECEIPT,
        sender="moscow",
        recipient="washington",
        envelope_id=receipt_id,
        statement=statement,
        recipient_key=m.peer_card("washington").encryption_key,
    )


def _cross_check(w: NodeHome, m: NodeHome) -> dict[str, ItemCheck]:
    with m.store.read() as conn:
        size, root = transcript.size_and_root(conn)
    # Moscow's current head, as if proved consistent with every head Washington kept (§11.3).
    head = PeerHead(0, "moscow", size, root, "tree-head", b"", 0, 1)
    with w.store.read() as conn:
        items = exchanged_statements(conn, "moscow")
        ours = {ref: check_ours(conn, ref, statement) for ref, _kind, statement in items}
        claims = receipt_claims(conn, "moscow")
    results = asyncio.run(cross_check_items(head, items, ours, claims, StorePeerLog(m)))
    return {r.ref: r for r in results}


def _accept(w: NodeHome, envelope: bytes) -> None:
    result = inbox.receive(w.store, w.identity, w.peer_cards(), [envelope], now=NOW, source="t")
    assert [o.status for o in result.outcomes] == ["receipt"]  # the inbox cannot tell: P19


def test_a_receipt_naming_the_wrong_leaf_is_named_false_by_the_audit_check(pair):
    w, m = pair["washington"], pair["moscow"]
    first, second = _send(w, "one"), _send(w, "two")
    _moscow_takes_but_keeps_its_receipt(w, m)
    with m.store.read() as conn:
        (at,) = transcript.leaves_by_ref(conn, first)
        (elsewhere,) = transcript.leaves_by_ref(conn, second)
    _accept(w, _lying_receipt(w, m, first, elsewhere.index))  # claims `second`'s leaf
    _accept(w, _lying_receipt(w, m, second, elsewhere.index))  # the truth, for contrast
    checks = _cross_check(w, m)
    # Both messages are in Moscow's log: only the receipt's claim about `first` is false.
    assert (checks[first].theirs, checks[first].claimed) == ("ok", "false")
    assert not checks[first].ok
    assert f"claims leaf {elsewhere.index}" in checks[first].detail
    assert at.index != elsewhere.index
    assert (checks[second].theirs, checks[second].claimed, checks[second].ok) == ("ok", "ok", True)


def test_a_receipt_for_a_message_the_peer_never_logged_is_caught(pair):
    w, m = pair["washington"], pair["moscow"]
    logged = _send(w, "logged")
    _moscow_takes_but_keeps_its_receipt(w, m)
    never = _send(w, "never reaches moscow")  # queued after Moscow took the first batch
    with m.store.read() as conn:
        (leaf,) = transcript.leaves_by_ref(conn, logged)
    _accept(w, _lying_receipt(w, m, never, leaf.index))
    with w.store.read() as conn:
        view = get_message(conn, never, "washington")
    assert view is not None and view.state.value == "delivered"  # what the lie buys at once
    checks = _cross_check(w, m)
    assert checks[never].theirs == "missing"
    assert checks[never].claimed == "false"
    assert checks[logged].claimed == ""  # no receipt from Moscow reached us for it


def test_an_unanswered_proof_leaves_the_claim_unproved_not_false(pair):
    w, m = pair["washington"], pair["moscow"]
    message_id = _send(w, "x")
    _moscow_takes_but_keeps_its_receipt(w, m)
    with m.store.read() as conn:
        (leaf,) = transcript.leaves_by_ref(conn, message_id)
    _accept(w, _lying_receipt(w, m, message_id, leaf.index))

    class Silent(StorePeerLog):
        async def inclusion_proof(self, index: int, size: int) -> list[bytes]:
            raise InputError("not now")

    with w.store.read() as conn:
        items = exchanged_statements(conn, "moscow")
        ours = {ref: check_ours(conn, ref, s) for ref, _kind, s in items}
        claims = receipt_claims(conn, "moscow")
    (check,) = [
        r
        for r in asyncio.run(cross_check_items(None, items, ours, claims, Silent(m)))
        if r.ref == message_id
    ]
    assert check.claimed == "unproved"
