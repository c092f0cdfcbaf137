"""A message the receiver holds but the sender gave up on (its receipts all lost on the way, then
expired) ends delivered on both sides: the sender's next heartbeat lists it as expired, and the
receiver sends its DELIVERED receipt back (threat P17, protocol §9.3)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from faultproxy import FaultProxy
from sqlalchemy import select
from storm import integration

from hotline.node.home import CONFIG_FILE, NodeHome
from hotline.store.messages import get_message
from hotline.store.schema import link_events, messages, security_events
from hotline.transcript._schema import transcript_leaves


def _codes(home: NodeHome, column) -> list[str]:
    with home.store.read() as conn:
        return [str(v) for v in conn.execute(select(column)).scalars()]


def _state(home: NodeHome, message_id: str) -> str | None:
    with home.store.read() as conn:
        view = get_message(conn, message_id, home.config.name)
    return None if view is None else view.state.value


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@dataclasses.dataclass
class _Pair:
    homes: dict[str, NodeHome]
    nodes: dict[str, integration.NodeProcess]
    spoiled: list[str]


@pytest.fixture
def pair(tmp_path) -> Iterator[_Pair]:
    """washington and moscow, washington reaching moscow through a proxy that spoils every
    answer to a batch of envelopes (moscow commits each one; washington never sees a receipt)
    and lets heartbeats through; messages expire after 4 s."""
    listen = {n: f"127.0.0.1:{integration.free_port()}" for n in ("washington", "moscow")}
    to_moscow = FaultProxy(
        "to-moscow", ("127.0.0.1", int(listen["moscow"].rsplit(":", 1)[1])), seed=0
    ).start()
    spoiled: list[str] = []

    def lose_receipts(path: str, body: bytes) -> bytes:
        if path.startswith("/v1/envelopes"):
            spoiled.append(path)
            return b"not a batch reply"
        return body

    to_moscow.rewrite_answer = lose_receipts
    homes: dict[str, NodeHome] = {}
    for name, address in listen.items():
        home = NodeHome.init(
            tmp_path / name, name=name, listen=address, display_names={"en": name}, tls=False
        )
        config = dataclasses.replace(
            home.config,
            endpoint=to_moscow.url if name == "moscow" else home.config.endpoint,
            retry_cap_s=0.5,
            heartbeat_interval_s=1.0,
            default_ttl_s=4,
        )
        (home.dir / CONFIG_FILE).write_text(config.to_toml())
        homes[name] = NodeHome(home.dir)
    now = datetime.now(UTC)
    for name, home in homes.items():
        for other_name, other in homes.items():
            if other_name != name:
                card = other.card(now)
                home.add_peer(card, card.fingerprint, now)
    nodes = {n: integration.NodeProcess(h, tmp_path) for n, h in homes.items()}
    try:
        for node in nodes.values():
            node.start()
        yield _Pair(homes, nodes, spoiled)
    finally:
        for node in nodes.values():
            node.stop()
        to_moscow.stop()
        for home in homes.values():
            home.close()


def _send_and_let_expire(pair: _Pair) -> str:
    """A message moscow takes in and washington expires (its receipts all spoiled)."""
    w, m = pair.homes["washington"], pair.homes["moscow"]
    with pair.nodes["washington"].api() as api:
        response = api.post("/api/v1/messages", json={"to": "moscow", "text": "held?"})
    assert response.status_code == 200, response.text
    message_id = str(response.json()["id"])
    _wait(lambda: _state(m, message_id) == "delivered", 10, "moscow to take the message in")
    # moscow commits before it answers: the proxy spoils the answer a moment later.
    _wait(lambda: bool(pair.spoiled), 10, "the proxy to spoil the batch reply")
    _wait(
        lambda: "message_expired" in _codes(w, security_events.c.code),
        15,
        "washington to expire the message",
    )
    return message_id


def _ends_delivered_once(pair: _Pair, message_id: str) -> None:
    w, m = pair.homes["washington"], pair.homes["moscow"]
    _wait(lambda: _state(w, message_id) == "delivered", 20, "the receipt to come back")
    assert "delivered_after_expiry" in _codes(w, security_events.c.code)
    assert "receipts_sent_back" in _codes(m, link_events.c.kind)
    with w.store.read() as conn:
        kinds = list(conn.execute(select(transcript_leaves.c.kind)).scalars())
    assert kinds.count("message.out") == 1 and kinds.count("receipt.in") == 1
    with m.store.read() as conn:
        held = conn.execute(select(messages.c.id).where(messages.c.direction == "in")).all()
    assert [r.id for r in held] == [message_id]  # once, whatever the retries


@pytest.mark.integration
@pytest.mark.slow
def test_a_message_expired_at_the_sender_but_held_by_the_receiver_ends_delivered(pair):
    # washington gives up when the message expires; its next heartbeat tells moscow, which
    # sends the receipt back directly.
    message_id = _send_and_let_expire(pair)
    _ends_delivered_once(pair, message_id)


@pytest.mark.integration
@pytest.mark.slow
def test_late_receipts_survive_a_restart_of_both_sides(pair):
    """The expired numbers a heartbeat names come from the store, not from memory: moscow
    killed with the message (its receipts spoiled), washington expiring it meanwhile and then
    stopped before it could tell anyone, both restarted: the receipt still comes back once."""
    w, m = pair.homes["washington"], pair.homes["moscow"]
    with pair.nodes["washington"].api() as api:
        response = api.post("/api/v1/messages", json={"to": "moscow", "text": "held?"})
    assert response.status_code == 200, response.text
    message_id = str(response.json()["id"])
    _wait(lambda: _state(m, message_id) == "delivered", 10, "moscow to take the message in")
    _wait(lambda: bool(pair.spoiled), 10, "the proxy to spoil the batch reply")
    pair.nodes["moscow"].kill9()  # no receipt can come back now, nor any heartbeat be answered
    _wait(
        lambda: "message_expired" in _codes(w, security_events.c.code),
        15,
        "washington to expire the message",
    )
    pair.nodes["washington"].stop()
    assert _state(w, message_id) == "expired"
    for node in pair.nodes.values():
        node.start()
    _ends_delivered_once(pair, message_id)
