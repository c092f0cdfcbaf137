"""A relay between real node processes: washington and moscow registered with geneva (a neutral
party's relay). Messages and receipts travel through it when the direct path is dead; the relay
can read nothing and forge nothing, and what it can do (drop, delay, reorder, replay, corrupt)
the nodes notice by sequence numbers, replay checks and receipts."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import socketserver
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from node_waits import message_state, send_text, wait_for
from sqlalchemy import func, insert, select, update

from hotline.cli import main
from hotline.core.envelope import read_header
from hotline.link.mailbox import relay_mailbox
from hotline.node.home import CONFIG_FILE, NodeHome
from hotline.store.schema import link_events, messages, security_events

pytestmark = pytest.mark.integration


def _codes(home: NodeHome) -> list[str]:
    with home.store.read() as conn:
        return [str(r[0]) for r in conn.execute(select(security_events.c.code))]


def _held(relay: NodeHome, recipient: str) -> int:
    """Messages (not heartbeats) the relay holds for ``recipient``."""
    with relay.store.read() as conn:
        return int(
            conn.execute(
                select(func.count()).where(
                    relay_mailbox.c.recipient == recipient, relay_mailbox.c.kind == "message"
                )
            ).scalar_one()
        )


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again at once: nothing listens there


def _cut_direct_path(sender: Any, peer: Any) -> None:
    """``sender`` learns a card of ``peer`` (signed by peer) whose only endpoint is dead."""
    config = dataclasses.replace(peer.home.config, endpoint=f"https://127.0.0.1:{_dead_port()}")
    (peer.home.dir / CONFIG_FILE).write_text(config.to_toml())
    card = NodeHome(peer.home.dir).card(datetime.now(UTC))
    sender.home.add_peer(card, card.fingerprint, datetime.now(UTC))


def test_messages_and_receipts_travel_through_the_relay(relayed, capsys):
    w, m, g = relayed["washington"], relayed["moscow"], relayed["geneva"]
    _cut_direct_path(w, m)  # washington can reach moscow only through geneva
    for process in (g, m, w):
        process.start()
    message_id = send_text(w, "moscow", "through the neutral relay")
    wait_for(
        lambda: message_state(w.home, message_id) == "delivered", 30, "DELIVERED through the relay"
    )
    assert message_state(m.home, message_id) == "delivered"
    # moscow's operator acknowledges: the receipt reaches washington (directly, its path works).
    with m.api() as api:
        assert api.post(f"/api/v1/messages/{message_id}/ack", json={}).status_code == 200
    wait_for(lambda: message_state(w.home, message_id) == "acknowledged", 30, "ACKNOWLEDGED")
    wait_for(lambda: _held(g.home, "moscow") == 0, 30, "the relay to hand over and forget")
    with w.home.store.read() as conn:
        kinds = [
            (r.kind, r.transport)
            for r in conn.execute(select(link_events).where(link_events.c.peer == "moscow"))
        ]
    assert ("failover", "relay:geneva") in kinds
    assert ("heartbeat_ok", "relay:geneva") in kinds  # heartbeats run over the relay too
    # The link board (hotline link) shows each transport in the order used: dead direct, relay up.
    capsys.readouterr()
    assert main(["link", "--dir", str(w.home.dir), "--json"]) == 0
    board = {r["peer"]: r for r in json.loads(capsys.readouterr().out)}
    transports = board["moscow"]["transports"]
    assert [t["transport"] for t in transports][-1] == "relay:geneva"
    assert transports[-1]["state"] == "up" and transports[0]["state"] in ("degraded", "down")
    assert board["moscow"]["state"] == "up"
    assert "geneva" not in board  # a relay is not a link
    # The relay never held anything it could open: it has no key of either party's envelopes,
    # and refuses a deposit that is not signed by a registered node.
    assert "link_down" not in _codes(w.home)


def test_the_nodes_notice_what_a_malicious_relay_does(relayed):
    """geneva drops one envelope, corrupts one, reorders the rest and later replays one: moscow
    delivers each message exactly once, in its sequence, and records the gap, the corruption and
    the replay; washington resends what never got a receipt until everything is receipted."""
    w, m, g = relayed["washington"], relayed["moscow"], relayed["geneva"]
    _cut_direct_path(w, m)
    g.start()
    w.start()  # moscow is not running yet: its mail waits at the relay
    ids = [send_text(w, "moscow", f"message {i}") for i in range(1, 6)]
    wait_for(lambda: _held(g.home, "moscow") >= 5, 30, "five envelopes at the relay")
    w.stop()  # nothing is resent while the relay misbehaves (it would resend after 3 s)
    with g.home.store.write() as conn:
        rows = list(
            conn.execute(
                select(relay_mailbox.c.id, relay_mailbox.c.envelope, relay_mailbox.c.kind)
                .where(relay_mailbox.c.recipient == "moscow")
                .order_by(relay_mailbox.c.id)
            )
        )
        mail = [r for r in rows if r.kind == "message"]
        by_id = {read_header(bytes(r.envelope)).envelope_id: r for r in mail}
        first = bytes(by_id[ids[0]].envelope)
        # drop message 3; corrupt message 4 (one flipped byte); serve the rest newest first.
        conn.execute(relay_mailbox.delete().where(relay_mailbox.c.id == by_id[ids[2]].id))
        corrupt = bytearray(by_id[ids[3]].envelope)
        corrupt[-40] ^= 0x01
        conn.execute(
            update(relay_mailbox)
            .where(relay_mailbox.c.id == by_id[ids[3]].id)
            .values(envelope=bytes(corrupt))
        )
        kept = [by_id[ids[i]] for i in (0, 1, 4)]
        slots = sorted(r.id for r in kept)
        for slot, row in zip(slots, reversed(kept), strict=True):
            conn.execute(
                update(relay_mailbox)
                .where(relay_mailbox.c.id == slot)
                .values(envelope=bytes(row.envelope), digest=f"reordered-{slot}")
            )
    m.start()
    wait_for(lambda: message_state(m.home, ids[0]) == "delivered", 30, "moscow takes its mail")
    wait_for(lambda: "decrypt_failed" in _codes(m.home), 30, "the corrupted envelope refused")
    assert "sequence_gap" in _codes(m.home)  # 5 came before 1 and 2: numbers missing, noticed
    assert message_state(m.home, ids[2]) is None  # dropped: never arrived
    w.start()  # washington resends what has no receipt (3 and 4) through the relay
    for message_id in ids:
        wait_for(
            lambda i=message_id: message_state(w.home, i) == "delivered",
            40,
            f"receipt of {message_id}",
        )
    # The relay replays message 1 later: moscow sees a duplicate and delivers nothing twice.
    with g.home.store.write() as conn:
        conn.execute(
            insert(relay_mailbox).values(
                recipient="moscow",
                sender="washington",
                kind="message",
                envelope_id=ids[0],
                digest="replayed",
                envelope=first,
                size=len(first),
                deposited_at_us=0,
                expires_at_us=2**62,
            )
        )
    wait_for(lambda: _held(g.home, "moscow") == 0, 30, "the replay to be taken")
    with m.home.store.read() as conn:
        rows = list(
            conn.execute(select(messages.c.id, messages.c.seq).where(messages.c.direction == "in"))
        )
    assert sorted(r.seq for r in rows) == [1, 2, 3, 4, 5]
    assert sorted(r.id for r in rows) == sorted(ids)


class _Path:
    """A TCP forwarder standing for the direct network path to moscow: it can be cut (every
    connection closed, nothing listening) and restored on the same port."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = _dead_port()
        self.server: socketserver.ThreadingTCPServer | None = None
        self.connections: list[socket.socket] = []

    def restore(self) -> None:
        target, connections = self.target, self.connections

        class Pipe(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                upstream = socket.create_connection(("127.0.0.1", target))
                connections.extend([upstream, self.request])

                def pump(src: socket.socket, dst: socket.socket) -> None:
                    try:
                        while data := src.recv(65536):
                            dst.sendall(data)
                    except OSError:
                        pass
                    finally:
                        dst.close()

                threading.Thread(target=pump, args=(upstream, self.request), daemon=True).start()
                pump(self.request, upstream)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Pipe)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def cut(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        for conn in self.connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
                conn.close()
        self.connections.clear()


def _events(home: NodeHome) -> list[tuple[str, str | None]]:
    with home.store.read() as conn:
        return [
            (r.kind, r.transport)
            for r in conn.execute(
                select(link_events).where(link_events.c.peer == "moscow").order_by(link_events.c.id)
            )
        ]


def test_direct_path_cut_then_back_relay_carries_the_gap(relayed):
    """The direct path dies: messages keep flowing through the relay within seconds; the direct
    path returns: the link falls back to it and uses it again (the relay is then not needed)."""
    w, m, g = relayed["washington"], relayed["moscow"], relayed["geneva"]
    path = _Path(int(m.endpoint.rsplit(":", 1)[1]))
    path.restore()
    config = dataclasses.replace(m.home.config, endpoint=f"https://127.0.0.1:{path.port}")
    (m.home.dir / CONFIG_FILE).write_text(config.to_toml())
    card = NodeHome(m.home.dir).card(datetime.now(UTC))
    w.home.add_peer(card, card.fingerprint, datetime.now(UTC))
    try:
        for process in (g, m, w):
            process.start()
        first = send_text(w, "moscow", "over the direct path")
        wait_for(lambda: message_state(w.home, first) == "delivered", 30, "direct delivery")
        assert ("failover", "relay:geneva") not in _events(w.home)

        path.cut()
        during = [send_text(w, "moscow", f"while the cable is cut {i}") for i in range(3)]
        for message_id in during:
            wait_for(
                lambda i=message_id: message_state(w.home, i) == "delivered", 30, "relayed delivery"
            )
        assert ("failover", "relay:geneva") in _events(w.home)
        with w.api() as api:
            board = {link["peer"]: link for link in api.get("/api/v1/links").json()}
        moscow = board["moscow"]
        assert moscow["active_transport"] == "relay:geneva"
        states = {t["transport"]: t["state"] for t in moscow["transports"]}
        assert states["relay:geneva"] == "up"
        assert states[f"https://127.0.0.1:{path.port}"] in ("degraded", "down")

        path.restore()
        wait_for(
            lambda: ("fallback", f"https://127.0.0.1:{path.port}") in _events(w.home),
            30,
            "the fallback to the direct path",
        )
        g.stop()  # from now on only the direct path can carry anything
        after = send_text(w, "moscow", "the cable is repaired")
        wait_for(lambda: message_state(w.home, after) == "delivered", 30, "direct delivery again")
        with m.home.store.read() as conn:
            received = {r.id for r in conn.execute(select(messages.c.id))}
        assert {first, *during, after} <= received
    finally:
        path.cut()
