"""What a heartbeat's `expired` list does at the receiver (protocol §9.2, §9.3): declared gaps
are closed without an alarm; a gap neither filled nor declared past the grace period is a
`sequence_gap` alarm; declared numbers the receiver holds have their receipts sent back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from hotline.link import inbox
from hotline.node.runtime import Node
from hotline.store.schema import inbound_gaps, link_events, security_events


def _take_in(w, m, seqs: list[int], forge, now: datetime) -> None:
    envelopes = [forge(w, m, seq=s) for s in seqs]
    inbox.receive(m.store, m.identity, m.peer_cards(), envelopes, now=now, source="t")


def _gaps(m) -> list[int]:
    with m.store.read() as conn:
        return [int(r[0]) for r in conn.execute(select(inbound_gaps.c.seq).order_by("seq"))]


def _stale_gap_alarms(m) -> list[str]:
    """`sequence_gap` alarms a heartbeat raised (arrivals raise their own, "received seq N")."""
    with m.store.read() as conn:
        details = conn.execute(
            select(security_events.c.detail).where(security_events.c.code == "sequence_gap")
        ).scalars()
        return [d for d in details if d.startswith("peer sent up to")]


def _link_kinds(m) -> list[str]:
    with m.store.read() as conn:
        return list(conn.execute(select(link_events.c.kind)).scalars())


def test_declared_gaps_close_quietly_and_undeclared_old_ones_raise_an_alarm(
    pair, forge, forge_beat
):
    w, m = pair["washington"], pair["moscow"]
    long_ago = datetime.now(UTC) - timedelta(hours=1)  # far past the grace period
    _take_in(w, m, [1, 3, 5], forge, long_ago)
    assert _gaps(m) == [2, 4]
    node = Node(m)
    node.answer_heartbeat(forge_beat(w, m, last_seq=5, expired=(2,)), "t")
    assert _gaps(m) == [4]
    assert "gap_expired" in _link_kinds(m)
    assert _stale_gap_alarms(m) == ["peer sent up to seq 5; missing [4]"]
    # Once the sender declares 4 expired too, the record is whole and the alarms stop.
    node.answer_heartbeat(forge_beat(w, m, last_seq=5, expired=(4,)), "t")
    assert _gaps(m) == [] and len(_stale_gap_alarms(m)) == 1


def test_a_fresh_gap_is_not_an_alarm_yet(pair, forge, forge_beat):
    w, m = pair["washington"], pair["moscow"]
    _take_in(w, m, [1, 3], forge, datetime.now(UTC))
    Node(m).answer_heartbeat(forge_beat(w, m, last_seq=3), "t")
    assert _gaps(m) == [2] and _stale_gap_alarms(m) == []


def test_declared_numbers_the_receiver_holds_have_their_receipts_sent_back(pair, forge, forge_beat):
    w, m = pair["washington"], pair["moscow"]
    _take_in(w, m, [1, 2], forge, datetime.now(UTC))
    node = Node(m)
    node.answer_heartbeat(forge_beat(w, m, last_seq=3, expired=(2, 3)), "t")
    assert "receipts_sent_back" in _link_kinds(m)
    waiting = node.links["washington"]._late_receipts
    assert len(waiting) == 1  # one DELIVERED receipt covered the batch holding 2
    assert _gaps(m) == []  # 3 never came and is declared expired: no gap either
