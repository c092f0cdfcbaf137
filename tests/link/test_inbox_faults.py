"""An unexpected error while the inbox accepts one envelope (a bug of ours, reached by a peer's
signed but pathological content) rejects that envelope alone, with code ``internal``, leaves
nothing of it behind, and the batch's other envelopes are accepted (threat model P15)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from hotline.link import inbox
from hotline.store.messages import get_message
from hotline.store.schema import inbound_gaps, security_events

NOW = datetime.now(UTC)


def test_an_internal_error_in_one_envelope_rejects_it_alone_and_leaves_nothing(
    pair, forge, monkeypatch
) -> None:
    w, m = pair["washington"], pair["moscow"]
    # The catalog check every received message goes through (plain messages are decided a
    # group at a time, without a savepoint each: the bug must still reject its message alone).
    real = inbox.validate_body

    def hook_with_a_bug(msg_type, body):  # stands for any bug a peer's content could reach
        if body.get("text") == "trips a bug":
            raise KeyError("a bug of ours")
        return real(msg_type, body)

    monkeypatch.setattr(inbox, "validate_body", hook_with_a_bug)
    envelopes = [forge(w, m, seq=1), forge(w, m, seq=2, text="trips a bug"), forge(w, m, seq=3)]
    result = inbox.receive(m.store, m.identity, m.peer_cards(), envelopes, now=NOW, source="t")

    assert [o.status for o in result.outcomes] == ["accepted", "rejected", "accepted"]
    rejected = result.outcomes[1]
    assert rejected.code == "internal" and rejected.detail == "internal error (KeyError)"
    with m.store.read() as conn:
        assert get_message(conn, rejected.id or "", "moscow") is None  # rolled back whole
        assert [r.seq for r in conn.execute(select(inbound_gaps.c.seq))] == [2]
        codes = [r.code for r in conn.execute(select(security_events.c.code))]
    assert "internal" in codes
    # One receipt for the two accepted messages; the rejected one is resent and accepted later.
    assert len(result.receipts["washington"]) == 1
    monkeypatch.setattr(inbox, "validate_body", real)
    again = inbox.receive(m.store, m.identity, m.peer_cards(), [envelopes[1]], now=NOW, source="t")
    assert [o.status for o in again.outcomes] == ["accepted"]
    assert inbox.next_expected(m.store, "washington") == 4
