"""Two real node processes talking over HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from node_waits import message_state, wait_for
from sqlalchemy import func, select

from hotline.cli import main
from hotline.link import outbox
from hotline.node.home import NodeHome
from hotline.store.schema import message_events, messages

pytestmark = pytest.mark.integration


def _cli_json(capsys, *args: str):
    capsys.readouterr()
    code = main([*args, "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def test_conversation_with_receipts_through_the_cli(linked_nodes, capsys):
    w, m = linked_nodes["washington"].home, linked_nodes["moscow"].home
    sent = _cli_json(
        capsys,
        "send",
        "--dir",
        str(w.dir),
        "--to",
        "moscow",
        "--priority",
        "immediate",
        "--text",
        "Confirm your launch at 03:12 UTC",
    )
    message_id = sent["id"]
    wait_for(lambda: message_state(w, message_id) == "delivered", 10, "DELIVERED receipt")

    inbox = _cli_json(capsys, "inbox", "--dir", str(m.dir))
    assert [(x["id"], x["from"], x["priority"], x["text"]) for x in inbox] == [
        (message_id, "washington", "immediate", "Confirm your launch at 03:12 UTC")
    ]
    assert (
        main(
            [
                "ack",
                message_id,
                "--dir",
                str(m.dir),
                "--operator",
                "ivanov",
                "--lang",
                "ru",
                "--tz",
                "Europe/Moscow",
            ]
        )
        == 0
    )
    wait_for(lambda: message_state(w, message_id) == "acknowledged", 10, "ACKNOWLEDGED receipt")
    # Read-back: washington reproduces the Russian text ivanov was shown, checked by hash.
    readback = _cli_json(capsys, "show", message_id, "--dir", str(w.dir), "--as-acknowledged")
    assert readback["readback"]["matches"] is True
    assert readback["readback"]["operator"] == "ivanov"
    assert "ПРОИЗВОЛЬНЫЙ ТЕКСТ" in readback["shown"]
    answer = _cli_json(capsys, "reply", message_id, "--dir", str(m.dir), "--text", "Confirmed.")
    wait_for(lambda: message_state(w, message_id) == "answered", 10, "the answer")
    wait_for(lambda: message_state(m, answer["id"]) == "delivered", 10, "the answer's receipt")

    status = _cli_json(capsys, "status", message_id, "--dir", str(w.dir))
    assert [e["state"] for e in status["events"]] == [
        "queued",
        "sent",
        "delivered",
        "acknowledged",
        "answered",
    ]
    shown = _cli_json(capsys, "show", answer["id"], "--dir", str(w.dir))
    assert shown["in_reply_to"] == message_id and shown["text"] == "Confirmed."

    wait_for(
        lambda: _cli_json(capsys, "link", "--dir", str(w.dir))[0]["state"] == "up",
        10,
        "a heartbeat",
    )
    link = _cli_json(capsys, "link", "--dir", str(w.dir))[0]
    assert link["peer"] == "moscow" and link["rtt_ms"] is not None


def test_receiver_down_then_back(linked_nodes, capsys):
    w_node, m_node = linked_nodes["washington"], linked_nodes["moscow"]
    w = w_node.home
    m_node.stop()
    ids = [
        _cli_json(capsys, "send", "--dir", str(w.dir), "--to", "moscow", "--text", f"m{i}")["id"]
        for i in range(5)
    ]
    time.sleep(2.0)
    assert {message_state(w, i) for i in ids} <= {"queued", "sent"}
    wait_for(
        lambda: _cli_json(capsys, "link", "--dir", str(w.dir))[0]["state"] == "down",
        20,
        "the link to be reported down",
    )
    # Never silent: the outage is an alarm for the operators, once.
    wait_for(
        lambda: _cli_json(capsys, "events", "--dir", str(w.dir), "--code", "link_down"),
        10,
        "the link_down alarm",
    )
    m_node.start()
    wait_for(
        lambda: all(message_state(w, i) == "delivered" for i in ids), 15, "delivery after restart"
    )


def _submit_many(home: NodeHome, to: str, count: int) -> list[str]:
    card = home.peer_card(to)
    return [
        outbox.submit_message(
            home.store,
            home.identity,
            card,
            msg_type="free_text",
            priority="routine",
            body={"text": f"message {i:03d}", "lang": "en"},
            now=datetime.now(UTC),
            ttl=timedelta(hours=1),
        )
        for i in range(count)
    ]


def _delivered_count(home: NodeHome, ids: list[str]) -> int:
    with home.store.read() as conn:
        return conn.execute(
            select(func.count(func.distinct(message_events.c.message_id))).where(
                message_events.c.message_id.in_(ids), message_events.c.state == "delivered"
            )
        ).scalar_one()


@pytest.mark.slow
def test_kill9_of_sender_and_receiver_loses_nothing_and_duplicates_nothing(linked_nodes):
    w_node, m_node = linked_nodes["washington"], linked_nodes["moscow"]
    w, m = w_node.home, m_node.home
    ids_w = _submit_many(w, "moscow", 200)
    ids_m = _submit_many(m, "washington", 200)
    with w_node.api() as api:
        api.post("/api/v1/wake")
    with m_node.api() as api:
        api.post("/api/v1/wake")

    # Kill the receiver mid-stream, then the sender, each at least once while traffic flows.
    wait_for(lambda: _delivered_count(w, ids_w) > 0, 20, "the first deliveries")
    m_node.kill9()
    time.sleep(0.3)
    m_node.start()
    w_node.kill9()
    time.sleep(0.3)
    w_node.start()
    m_node.kill9()
    m_node.start()

    wait_for(
        lambda: _delivered_count(w, ids_w) == 200 and _delivered_count(m, ids_m) == 200,
        90,
        "all 400 messages receipted",
    )

    for sender, receiver, ids in ((w, m, ids_w), (m, w, ids_m)):
        with receiver.store.read() as conn:
            rows = list(
                conn.execute(
                    select(messages.c.id, messages.c.seq)
                    .where(
                        messages.c.direction == "in",
                        messages.c.peer == sender.config.name,
                        messages.c.kind == "message",
                    )
                    .order_by(messages.c.created_at_us, messages.c.seq)
                )
            )
            delivered_events = conn.execute(
                select(func.count())
                .select_from(message_events)
                .where(message_events.c.message_id.in_(ids), message_events.c.state == "delivered")
            ).scalar_one()
        # Exactly once: every id once, every sequence number 1..200 once, one delivery each.
        assert sorted(r.id for r in rows) == sorted(ids)
        assert sorted(r.seq for r in rows) == list(range(1, 201))
        assert delivered_events == 200
        # In order per direction: the receiver committed them in sequence order.
        with receiver.store.read() as conn:
            arrival = [
                r.seq
                for r in conn.execute(
                    select(messages.c.seq)
                    .join(message_events, message_events.c.message_id == messages.c.id)
                    .where(
                        messages.c.direction == "in",
                        messages.c.peer == sender.config.name,
                        message_events.c.state == "delivered",
                    )
                    .order_by(message_events.c.id)
                )
            ]
        assert arrival == sorted(arrival)
