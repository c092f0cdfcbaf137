"""A received referral's STIX bundle is validated after the inbox's transaction, never in it
(threat model F4): the OASIS validator may take seconds on a hostile bundle within the size and
object limits (a pattern of thousands of terms, or ones it cannot parse without overflowing its
recursion), and the inbox's write transaction must not wait for it."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from typing import Any

from referral_helpers import NOW, TTL, sample_bundle
from sqlalchemy import select

from hotline.compose.catalog import RequestedAction, Tlp
from hotline.link import inbox, outbox
from hotline.node.home import NodeHome
from hotline.node.runtime import Node
from hotline.referrals import cases, stix
from hotline.referrals._schema import taxii_objects
from hotline.store.messages import pending_outgoing


def _send(sender: NodeHome, to: str, msg_type: str, body: dict[str, Any]) -> str:
    """Queue a message as a (possibly hostile) peer's node would sign it: no checks of ours."""
    return outbox.submit_message(
        sender.store,
        sender.identity,
        sender.peer_card(to),
        msg_type=msg_type,
        priority="priority",
        body=body,
        now=NOW,
        ttl=TTL,
    )


def _referral(bundle: dict[str, Any]) -> dict[str, Any]:
    return cases.referral_body(
        stix.stamp_tlp(bundle, Tlp.AMBER),
        narrative="n",
        actions=[RequestedAction.INVESTIGATE],
        deadline=NOW + timedelta(hours=72),
        tlp=Tlp.AMBER,
    )


def _hostile_bundle() -> dict[str, Any]:
    """One indicator whose pattern (140 KiB of ORs, within every limit) the validator's
    pattern parser cannot take: it recursed for a second, then raised RecursionError."""
    pattern = " OR ".join(f"[ipv4-addr:value = '10.0.{i // 256}.{i % 256}']" for i in range(3500))
    indicator = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
        "created": "2026-11-18T00:00:00.000Z",
        "modified": "2026-11-18T00:00:00.000Z",
        "pattern": pattern,
        "pattern_type": "stix",
        "valid_from": "2026-11-18T00:00:00Z",
    }
    return {
        "type": "bundle",
        "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d",
        "objects": [indicator],
    }


def _receive(sender: NodeHome, receiver: NodeHome) -> inbox.Received:
    """Carry the sender's queued envelopes to the receiver's inbox, and the receipts back."""
    with sender.store.read() as conn:
        envelopes = [p.envelope for p in pending_outgoing(conn, receiver.config.name, 100)]
    result = inbox.receive(
        receiver.store, receiver.identity, receiver.peer_cards(), envelopes, now=NOW, source="t"
    )
    back = result.receipts.get(sender.config.name, [])
    inbox.receive(sender.store, sender.identity, sender.peer_cards(), back, now=NOW, source="t")
    return result


def _case(home: NodeHome, case_id: str) -> cases.CaseView:
    with home.store.read() as conn:
        return cases.get_case(conn, case_id)


def _served(home: NodeHome) -> int:
    with home.store.read() as conn:
        return len(conn.execute(select(taxii_objects.c.pk)).all())


def test_the_inbox_commits_a_referral_without_running_the_validator(
    homes: dict[str, NodeHome], monkeypatch
) -> None:
    w, m = homes["washington"], homes["moscow"]
    calls: list[int] = []
    real = stix.validate_stix
    monkeypatch.setattr(stix, "validate_stix", lambda b: (calls.append(1), real(b))[1])
    good = _send(w, "moscow", "cyber_referral", _referral(sample_bundle()))
    bad = _send(w, "moscow", "cyber_referral", _referral(_hostile_bundle()))

    result = _receive(w, m)
    assert result.referral_ids == [good, bad]
    assert calls == []  # nothing of the validator ran in the inbox's transaction
    for case_id in (good, bad):
        case = _case(m, case_id)
        assert case.problem == cases.PENDING and not case.served
    assert _served(m) == 0

    assert cases.validate_pending(m.store) == 2
    assert len(calls) == 2
    assert _case(m, good).served and _case(m, good).problem is None
    assert _served(m) == len(stix.stamp_tlp(sample_bundle(), Tlp.AMBER)["objects"])
    hostile = _case(m, bad)
    assert not hostile.served and (hostile.problem or "").startswith("stix_invalid")
    assert cases.validate_pending(m.store) == 0  # recorded once; never served twice


def test_the_store_takes_other_writes_while_a_bundle_is_being_validated(
    homes: dict[str, NodeHome], monkeypatch
) -> None:
    w, m = homes["washington"], homes["moscow"]
    validating, release = threading.Event(), threading.Event()
    real = stix.validate_stix

    def slow(bundle: dict[str, Any]) -> None:  # a validation that takes as long as we like
        validating.set()
        release.wait(timeout=60)
        real(bundle)

    monkeypatch.setattr(stix, "validate_stix", slow)
    case_id = _send(w, "moscow", "cyber_referral", _referral(sample_bundle()))
    _receive(w, m)
    worker = threading.Thread(target=cases.validate_pending, args=(m.store,))
    worker.start()
    try:
        assert validating.wait(timeout=60)
        # Mid-validation: another message from the peer is committed at once (with a write
        # transaction held by the validation, SQLite would make this wait, then fail).
        text = _send(w, "moscow", "free_text", {"text": "still there?", "lang": "en"})
        assert _receive(w, m).delivered_ids == [text]
        assert worker.is_alive()
    finally:
        release.set()
        worker.join(timeout=60)
    assert _case(m, case_id).served


def test_a_node_validates_what_its_inbox_received_in_the_background(
    homes: dict[str, NodeHome],
) -> None:
    w, m = homes["washington"], homes["moscow"]
    case_id = _send(w, "moscow", "cyber_referral", _referral(sample_bundle()))
    with w.store.read() as conn:
        envelopes = [p.envelope for p in pending_outgoing(conn, "moscow", 10)]
    node = Node(m)
    try:
        assert node.receive(envelopes, "t").referral_ids == [case_id]
        node.validate_referrals().result(timeout=60)  # queued behind the receive's own
        assert _case(m, case_id).served
    finally:
        asyncio.run(node.stop())
