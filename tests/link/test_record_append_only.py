"""The record of messages refuses rewrites at the store (threat model I4): states, receipts and
signed fields cannot be changed or removed without dropping the triggers first; only a message's
sealed envelope may be replaced (sealed again to a peer's new key after a revocation)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from hotline.link import inbox

REWRITES = [
    "UPDATE message_events SET state = 'acknowledged'",
    "DELETE FROM message_events",
    "UPDATE receipts SET signed = signed",
    "DELETE FROM receipts",
    "DELETE FROM receipt_items",
    "UPDATE messages SET body = '{}'",
    "UPDATE messages SET priority = 'flash'",
    "UPDATE messages SET noted_at_us = 0",
    "DELETE FROM messages",
]


@pytest.fixture
def received(pair, forge):
    w, m = pair["washington"], pair["moscow"]
    envelopes = [forge(w, m, seq=1, text="hold")]
    result = inbox.receive(
        m.store, m.identity, m.peer_cards(), envelopes, now=datetime.now(UTC), source="t"
    )
    assert result.delivered_ids
    return m


@pytest.mark.parametrize("sql", REWRITES)
def test_the_record_refuses_rewrites(received, sql: str) -> None:
    with pytest.raises(IntegrityError, match="append-only"), received.store.engine.begin() as conn:
        conn.execute(text(sql))


def test_a_sealed_envelope_may_be_replaced(received) -> None:
    with received.store.write() as conn:
        assert conn.execute(text("UPDATE messages SET envelope = envelope")).rowcount == 1
