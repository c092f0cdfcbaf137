"""A peer's claimed times are shown, never used to order or to time (threat model P9): a
post-dated message does not stay on top of our inbox, a back-dated one is not buried, and a
message back-dated past the overdue scan's look-back is still escalated when nobody reads it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hotline.core.encoding import to_us
from hotline.link import inbox
from hotline.link.deadlines import default_deadlines, overdue
from hotline.node.home import NodeHome
from hotline.store.messages import list_messages


def test_lists_and_deadlines_go_by_arrival_not_by_the_claimed_time(pair, forge) -> None:
    washington, moscow = pair["washington"], pair["moscow"]
    arrival = datetime.now(UTC)
    claims = {
        1: arrival - timedelta(days=40),  # back-dated past the overdue look-back (30 days)
        2: arrival + timedelta(days=1),  # post-dated, to sit on top of the inbox
        3: arrival,
    }
    ids = {}
    for seq, created in claims.items():
        envelope = forge(moscow, washington, seq=seq, priority="flash", created=created)
        result = inbox.receive(
            washington.store,
            washington.identity,
            washington.peer_cards(),
            [envelope],
            now=arrival + timedelta(seconds=seq),  # they arrive in sequence order
            source="test",
        )
        assert result.delivered_ids, result
        ids[seq] = result.delivered_ids[0]

    with washington.store.read() as conn:
        listed = [v.id for v in list_messages(conn, "washington", direction="in")]
        # Nobody acknowledged them: two hours later every FLASH (5 minutes) is overdue.
        late = overdue(
            conn, to_us(arrival + timedelta(hours=2)), default_deadlines(), direction="in"
        )
    assert listed == [ids[3], ids[2], ids[1]]  # newest arrival first
    assert {o.id for o in late} == set(ids.values())
    due = {o.id: o.due_us for o in late}
    for seq, message_id in ids.items():
        arrived = arrival + timedelta(seconds=seq)
        assert due[message_id] == to_us(arrived + timedelta(minutes=5)), seq


def test_a_view_still_shows_what_the_peer_claimed(pair, forge) -> None:
    washington, moscow = pair["washington"], pair["moscow"]
    claimed = datetime(2020, 1, 1, tzinfo=UTC)
    envelope = forge(moscow, washington, seq=1, created=claimed)
    now = datetime.now(UTC)
    result = inbox.receive(
        washington.store,
        washington.identity,
        washington.peer_cards(),
        [envelope],
        now=now,
        source="test",
    )
    view = _only_view(washington)
    assert view.id == result.delivered_ids[0]
    assert view.created_at_us == to_us(claimed)


def _only_view(home: NodeHome):
    with home.store.read() as conn:
        (view,) = list_messages(conn, home.config.name, direction="in")
    return view
