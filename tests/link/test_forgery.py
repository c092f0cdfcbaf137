"""Receipts and messages a hostile peer could forge, and local files an attacker could swap."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from hotline.core.card import Identity, make_card
from hotline.core.envelope import (
    Kind,
    ReceiptItem,
    ReceiptKind,
    new_id,
    seal,
    sign_message,
    sign_receipt,
)
from hotline.errors import ConfigError, ErrorCode, InputError
from hotline.link import inbox, outbox
from hotline.node.home import SIGNING_KEY_FILE, NodeHome
from hotline.store.messages import get_message, pending_outgoing
from hotline.store.schema import security_events

NOW = datetime(2026, 11, 26, 3, 12, tzinfo=UTC)


def _receipt_from_moscow(m: NodeHome, items: list[ReceiptItem]) -> bytes:
    receipt_id = new_id(NOW)
    statement = sign_receipt(
        m.identity,
        to="washington",
        receipt_id=receipt_id,
        created=NOW,
        kind=ReceiptKind.DELIVERED,
        items=items,
    )
    return seal(
        kind=Kind.RECEIPT,
        sender="moscow",
        recipient="washington",
        envelope_id=receipt_id,
        statement=statement,
        recipient_key=m.peer_card("washington").encryption_key,
    )


def _codes(home: NodeHome) -> list[str]:
    with home.store.read() as conn:
        return [r.code for r in conn.execute(select(security_events.c.code))]


def test_a_receipt_for_a_message_never_sent_is_refused(pair):
    w, m = pair["washington"], pair["moscow"]
    fake = ReceiptItem(id=new_id(NOW), seq=1, envelope_hash="00" * 32, signed_hash="11" * 32)
    result = inbox.receive(
        w.store, w.identity, w.peer_cards(), [_receipt_from_moscow(m, [fake])], now=NOW, source="t"
    )
    assert result.outcomes[0].code == ErrorCode.UNKNOWN_MESSAGE
    assert "unknown_message" in _codes(w)


def test_a_receipt_for_other_bytes_than_we_sent_does_not_mark_delivered(pair):
    w, m = pair["washington"], pair["moscow"]
    message_id = outbox.submit_message(
        w.store,
        w.identity,
        w.peer_card("moscow"),
        msg_type="free_text",
        priority="routine",
        body={"text": "x", "lang": "en"},
        now=NOW,
        ttl=timedelta(hours=1),
    )
    with w.store.read() as conn:
        (sent,) = pending_outgoing(conn, "moscow", 10)
    wrong = ReceiptItem(id=message_id, seq=sent.seq, envelope_hash="ab" * 32, signed_hash="cd" * 32)
    result = inbox.receive(
        w.store, w.identity, w.peer_cards(), [_receipt_from_moscow(m, [wrong])], now=NOW, source="t"
    )
    assert result.outcomes[0].code == ErrorCode.REPLAY_CONFLICT
    with w.store.read() as conn:
        view = get_message(conn, message_id, "washington")
    assert view is not None and view.state.value == "queued"


def test_an_authentic_body_our_catalog_refuses_is_kept_and_flagged(pair):
    w, m = pair["washington"], pair["moscow"]
    message_id = new_id(NOW)
    statement = sign_message(
        w.identity,
        to="moscow",
        message_id=message_id,
        seq=1,
        created=NOW,
        msg_type="launch_codes",
        priority="routine",
        body={"x": 1},
    )
    envelope = seal(
        kind=Kind.MESSAGE,
        sender="washington",
        recipient="moscow",
        envelope_id=message_id,
        statement=statement,
        recipient_key=m.identity.decryption.public,
    )
    result = inbox.receive(m.store, m.identity, m.peer_cards(), [envelope], now=NOW, source="t")
    assert result.outcomes[0].status == "accepted"  # authentic: part of the record
    assert "invalid_body" in _codes(m)


def test_a_sequence_number_far_ahead_is_refused_without_recording_a_huge_gap(pair):
    w, m = pair["washington"], pair["moscow"]
    message_id = new_id(NOW)
    statement = sign_message(
        w.identity,
        to="moscow",
        message_id=message_id,
        seq=10**9,
        created=NOW,
        msg_type="free_text",
        priority="routine",
        body={"text": "x", "lang": "en"},
    )
    envelope = seal(
        kind=Kind.MESSAGE,
        sender="washington",
        recipient="moscow",
        envelope_id=message_id,
        statement=statement,
        recipient_key=m.identity.decryption.public,
    )
    result = inbox.receive(m.store, m.identity, m.peer_cards(), [envelope], now=NOW, source="t")
    assert result.outcomes[0].code == ErrorCode.SEQUENCE_OUT_OF_RANGE
    assert inbox.next_expected(m.store, "washington") == 1


def test_a_key_file_readable_by_others_is_refused(pair):
    w = pair["washington"]
    os.chmod(w.dir / SIGNING_KEY_FILE, 0o644)
    with pytest.raises(ConfigError):
        NodeHome(w.dir).identity  # noqa: B018


def test_a_known_peer_cannot_be_replaced_with_other_keys(pair):
    w = pair["washington"]
    impostor = make_card(Identity.generate("moscow"), display_names={}, endpoints=[], created=NOW)
    with pytest.raises(InputError):
        w.add_peer(impostor, impostor.fingerprint, NOW)
    assert w.peer_card("moscow").fingerprint != impostor.fingerprint
