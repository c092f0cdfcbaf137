"""Acknowledgement deadlines on a fake clock: overdue both ways, escalation, and its repetition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from hotline.core.encoding import to_us
from hotline.link import inbox, outbox
from hotline.link.deadlines import default_deadlines, escalate, overdue
from hotline.node.home import NodeHome
from hotline.store.messages import get_message, pending_outgoing
from hotline.store.schema import security_events

T0 = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
DEADLINES = default_deadlines()


def _pair(tmp_path):
    homes = {
        name: NodeHome.init(
            tmp_path / name, name=name, listen=f"127.0.0.1:{port}", display_names={"en": name}
        )
        for name, port in (("washington", 18901), ("moscow", 18902))
    }
    for home, other in (
        (homes["washington"], homes["moscow"]),
        (homes["moscow"], homes["washington"]),
    ):
        card = other.card(T0)
        home.add_peer(card, card.fingerprint, T0)
    return homes["washington"], homes["moscow"]


def test_a_flash_message_unacknowledged_after_five_minutes_escalates(tmp_path):
    w, m = _pair(tmp_path)
    flash = outbox.submit_message(
        w.store,
        w.identity,
        w.peer_card("moscow"),
        msg_type="free_text",
        priority="flash",
        body={"text": "confirm", "lang": "en"},
        now=T0,
        ttl=timedelta(hours=1),
    )
    routine = outbox.submit_message(
        w.store,
        w.identity,
        w.peer_card("moscow"),
        msg_type="free_text",
        priority="routine",
        body={"text": "later", "lang": "en"},
        now=T0,
        ttl=timedelta(hours=1),
    )
    with w.store.read() as conn:
        envelopes = [o.envelope for o in pending_outgoing(conn, "moscow", 10)]
    inbox.receive(m.store, m.identity, m.peer_cards(), envelopes, now=T0, source="t")

    def at(minutes: float) -> int:
        return to_us(T0 + timedelta(minutes=minutes))

    with w.store.write() as conn:
        assert overdue(conn, at(4.9), DEADLINES) == []
        assert escalate(conn, at(4.9), DEADLINES, 60) == []
        late = escalate(conn, at(5.5), DEADLINES, 60)
        assert [o.id for o in late] == [flash]
        # Repeated only after the escalation interval.
        assert escalate(conn, at(6.0), DEADLINES, 60) == []
        assert [o.id for o in escalate(conn, at(6.6), DEADLINES, 60)] == [flash]
        events = [r.code for r in conn.execute(select(security_events.c.code))]
    assert events.count("ack_overdue") == 2
    with w.store.read() as conn:
        view = get_message(conn, flash, "washington")
        assert view is not None and view.state.value == "queued"  # escalation is not progress
        assert [e.state for e in view.events].count("escalated") == 2
        assert routine not in {o.id for o in overdue(conn, at(60), DEADLINES)}
    # The receiving side sees the same message as overdue for *it* to acknowledge.
    with m.store.read() as conn:
        theirs = overdue(conn, at(10), DEADLINES)
    assert [(o.id, o.direction) for o in theirs] == [(flash, "in")]
    # Acknowledging ends it.
    outbox.acknowledge(
        m.store,
        m.identity,
        m.peer_card("washington"),
        flash,
        now=T0 + timedelta(minutes=11),
        ttl=timedelta(hours=1),
        operator="ivanov",
    )
    with m.store.read() as conn:
        assert overdue(conn, at(12), DEADLINES) == []
    w.close()
    m.close()


def test_deadlines_agreed_with_one_peer_override_the_node_defaults(tmp_path):
    w, m = _pair(tmp_path)
    outbox.submit_message(
        w.store,
        w.identity,
        w.peer_card("moscow"),
        msg_type="free_text",
        priority="routine",
        body={"text": "weekly", "lang": "en"},
        now=T0,
        ttl=timedelta(hours=1),
    )
    agreed = {"moscow": {"routine": 600.0}}

    def deadlines(peer: str) -> dict[str, float]:
        return {**DEADLINES, **agreed.get(peer, {})}

    with w.store.read() as conn:
        at = to_us(T0 + timedelta(minutes=11))
        assert overdue(conn, at, DEADLINES) == []  # 24 h by default
        assert len(overdue(conn, at, deadlines)) == 1  # 10 min agreed with moscow
    w.close()
    m.close()


def test_named_groups_and_all_resolve_to_peers(tmp_path):
    import dataclasses

    from hotline.cli.node import resolve_recipients
    from hotline.node.home import CONFIG_FILE

    w, m = _pair(tmp_path)
    config = dataclasses.replace(w.config, groups={"participating": ["moscow"]})
    (w.dir / CONFIG_FILE).write_text(config.to_toml())
    w2 = NodeHome(w.dir)
    assert w2.config.groups == {"participating": ["moscow"]}
    assert resolve_recipients(w2, ["participating", "all", "moscow"]) == ["moscow"]
    for home in (w, w2, m):
        home.close()
