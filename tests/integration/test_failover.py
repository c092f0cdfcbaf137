"""A peer with two endpoints: when the first fails, delivery fails over to the second within
seconds; when the first answers again, the link falls back to it."""

from __future__ import annotations

import dataclasses
import json
import socket
import socketserver
import threading
import time
from datetime import UTC, datetime

import pytest
from node_waits import message_state

from hotline.cli import main
from hotline.node.home import CONFIG_FILE, NodeHome
from hotline.store.schema import link_events

pytestmark = pytest.mark.integration


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again at once: nothing listens there


def test_delivery_fails_over_to_the_second_endpoint(linked_nodes, capsys):
    w_node, m_node = linked_nodes["washington"], linked_nodes["moscow"]
    w, m = w_node.home, m_node.home
    # moscow announces a dead preferred endpoint, then its real one.
    config = dataclasses.replace(
        m.config,
        endpoint=f"https://127.0.0.1:{_dead_port()}",
        alternate_endpoints=[m.config.endpoint],
    )
    (m.dir / CONFIG_FILE).write_text(config.to_toml())
    card = NodeHome(m.dir).card(datetime.now(UTC))
    assert card.endpoints[1] == m_node.endpoint
    w.add_peer(card, card.fingerprint, datetime.now(UTC))
    w_node.stop()
    w_node.start()  # loads the peer's new card

    capsys.readouterr()
    assert (
        main(
            ["send", "--dir", str(w.dir), "--to", "moscow", "--text", "via the 2nd path", "--json"]
        )
        == 0
    )
    message_id = json.loads(capsys.readouterr().out)["id"]
    started = time.monotonic()
    while time.monotonic() - started < 15 and message_state(w, message_id) != "delivered":
        time.sleep(0.05)
    assert message_state(w, message_id) == "delivered"
    assert time.monotonic() - started < 10  # failover within seconds, not a back-off minute
    with w.store.read() as conn:
        kinds = [
            r.kind for r in conn.execute(link_events.select().where(link_events.c.peer == "moscow"))
        ]
    assert "failover" in kinds


class _Forwarder:
    """A TCP forwarder from ``port`` to ``target`` on 127.0.0.1: the preferred path coming back."""

    def __init__(self, port: int, target: int) -> None:
        self.target = target
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", port), self._handler())
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _handler(self) -> type[socketserver.BaseRequestHandler]:
        target = self.target

        class Pipe(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                upstream = socket.create_connection(("127.0.0.1", target))

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

        return Pipe

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_link_falls_back_to_the_preferred_endpoint_when_it_answers(linked_nodes):
    w_node, m_node = linked_nodes["washington"], linked_nodes["moscow"]
    w, m = w_node.home, m_node.home
    preferred = _dead_port()
    real_port = int(m_node.endpoint.rsplit(":", 1)[1])
    config = dataclasses.replace(
        m.config, endpoint=f"https://127.0.0.1:{preferred}", alternate_endpoints=[m_node.endpoint]
    )
    (m.dir / CONFIG_FILE).write_text(config.to_toml())
    card = NodeHome(m.dir).card(datetime.now(UTC))
    w.add_peer(card, card.fingerprint, datetime.now(UTC))
    w_node.stop()
    w_node.start()

    def kinds() -> list[str]:
        with w.store.read() as conn:
            return [
                r.kind
                for r in conn.execute(link_events.select().where(link_events.c.peer == "moscow"))
            ]

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "failover" not in kinds():
        time.sleep(0.1)
    assert "failover" in kinds()
    forwarder = _Forwarder(preferred, real_port)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "fallback" not in kinds():
            time.sleep(0.1)
        assert "fallback" in kinds()
    finally:
        forwarder.close()
