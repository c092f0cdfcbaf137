"""Direct HTTPS between real node processes: TLS 1.3 only, and each side trusts exactly the
certificate pinned in the peer's signed card (another node's certificate, or a proxy's own, is
refused before a byte of HTTP is sent, with a typed error and a security event)."""

from __future__ import annotations

import dataclasses
import socket
import socketserver
import ssl
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from node_waits import message_state, send_text, wait_for
from sqlalchemy import select

from hotline.link.tls import cert_pem, key_pem, make_certificate, make_tls_key
from hotline.node.home import CONFIG_FILE, NodeHome
from hotline.node.limits import STOP_DEADLINE_S
from hotline.store.messages import get_message
from hotline.store.schema import security_events

pytestmark = pytest.mark.integration


def _pin_events(home: NodeHome) -> list[str]:
    with home.store.read() as conn:
        return [
            row.detail
            for row in conn.execute(
                select(security_events.c.detail).where(security_events.c.code == "tls_pin_mismatch")
            )
        ]


def _move_peer(sender: Any, peer: Any, endpoint: str) -> None:
    """``peer`` announces ``endpoint`` (a card it signs itself) and ``sender`` reloads it."""
    config = dataclasses.replace(peer.home.config, endpoint=endpoint)
    (peer.home.dir / CONFIG_FILE).write_text(config.to_toml())
    card = NodeHome(peer.home.dir).card(datetime.now(UTC))
    sender.home.add_peer(card, card.fingerprint, datetime.now(UTC))
    sender.stop()
    sender.start()


def test_two_node_processes_talk_over_tls_1_3(linked_nodes):
    w, m = linked_nodes["washington"], linked_nodes["moscow"]
    assert w.endpoint.startswith("https://") and m.endpoint.startswith("https://")
    message_id = send_text(w, "moscow", "over TLS 1.3, pinned")
    wait_for(lambda: message_state(w.home, message_id) == "delivered", 15, "DELIVERED over TLS")
    assert message_state(m.home, message_id) == "delivered"
    # The server speaks TLS 1.3 only: a client limited to TLS 1.2 gets no connection.
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{m.endpoint}/healthz", verify=old, timeout=5)
    # Nor does plain HTTP reach it.
    with pytest.raises(httpx.HTTPError):
        httpx.get(m.endpoint.replace("https://", "http://") + "/healthz", timeout=5)


def test_another_nodes_certificate_is_refused(tmp_path, linked_trio):
    """moscow's card points at an address where beijing (a real node, with its own valid
    certificate) answers: washington refuses it, alarms, and delivers once moscow is back."""
    w, m, b = linked_trio["washington"], linked_trio["moscow"], linked_trio["beijing"]
    real = m.endpoint
    _move_peer(w, m, b.endpoint)
    message_id = send_text(w, "moscow", "must not reach beijing")
    wait_for(lambda: _pin_events(w.home), 15, "a tls_pin_mismatch security event")
    assert "not the one pinned" in _pin_events(w.home)[0]
    assert message_state(w.home, message_id) in ("queued", "sent")
    with b.home.store.read() as conn:
        assert get_message(conn, message_id, "beijing") is None
    _move_peer(w, m, real)
    wait_for(
        lambda: message_state(w.home, message_id) == "delivered", 15, "delivery to the real moscow"
    )


class _MitmProxy:
    """A TLS-terminating proxy with its own certificate (same subject name as moscow's) in
    front of moscow: what an attacker on the path would run. Counts the HTTP bytes it gets."""

    def __init__(self, tmp: Path, target_port: int) -> None:
        key = make_tls_key()
        (tmp / "mitm.crt").write_bytes(cert_pem(make_certificate("moscow", key)))
        (tmp / "mitm.key").write_bytes(key_pem(key, None))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tmp / "mitm.crt", tmp / "mitm.key")
        self.handshakes = 0
        self.bytes_received = 0
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                try:
                    conn = context.wrap_socket(self.request, server_side=True)
                except (ssl.SSLError, OSError):
                    return  # the client refused our certificate
                proxy.handshakes += 1
                with conn, socket.create_connection(("127.0.0.1", target_port)) as upstream:
                    data = conn.recv(65536)
                    proxy.bytes_received += len(data)
                    upstream.sendall(data)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_mitm_proxy_with_its_own_certificate_is_refused(tmp_path, linked_nodes):
    w, m = linked_nodes["washington"], linked_nodes["moscow"]
    proxy = _MitmProxy(tmp_path, int(m.endpoint.rsplit(":", 1)[1]))
    try:
        _move_peer(w, m, f"https://127.0.0.1:{proxy.port}")
        message_id = send_text(w, "moscow", "not for the proxy")
        wait_for(lambda: _pin_events(w.home), 15, "a tls_pin_mismatch security event")
        time.sleep(1.0)  # further attempts (heartbeats, retries) are refused the same way
        assert proxy.handshakes == 0 and proxy.bytes_received == 0
        assert message_state(w.home, message_id) in ("queued", "sent")
        assert len(_pin_events(w.home)) == 1  # one alarm per path, not one per retry
    finally:
        proxy.close()


def test_a_node_stops_promptly_with_idle_and_long_polling_clients(linked_nodes: Any) -> None:
    """SIGTERM ends the node by itself within its stop deadline (STOP_DEADLINE_S), even while a
    client keeps an idle TLS keep-alive connection it never reads from (a graceful TLS close
    would wait for that client's close_notify: 30 s) and another long-polls a message that
    cannot be delivered (its peer is down)."""
    linked_nodes["moscow"].stop()
    node = linked_nodes["washington"]
    idle: ssl.SSLSocket | None = None
    try:
        context = node.home.local_verify()
        assert isinstance(context, ssl.SSLContext)
        raw = socket.create_connection(
            (node.home.config.listen_host, node.home.config.listen_port), timeout=10
        )
        idle = context.wrap_socket(raw, server_hostname=node.home.config.listen_host)
        idle.sendall(b"GET /healthz HTTP/1.1\r\nhost: washington\r\n\r\n")
        assert idle.recv(65536).startswith(b"HTTP/1.1 200")

        message_id = send_text(node, "moscow", "moscow is down: this stays queued")
        polled: list[int] = []

        def long_poll() -> None:
            with node.api() as api:
                try:
                    reply = api.get(
                        f"/api/v1/messages/{message_id}",
                        params={"wait": "delivered", "timeout": 60},
                    )
                    polled.append(reply.status_code)
                except httpx.HTTPError:
                    polled.append(0)

        poller = threading.Thread(target=long_poll)
        poller.start()
        time.sleep(0.5)  # the long-poll is in flight

        assert node.process is not None
        started = time.monotonic()
        node.process.terminate()
        try:
            node.process.wait(timeout=STOP_DEADLINE_S + 15)
        except subprocess.TimeoutExpired:
            log = node.log_path.read_text()[-6000:]
            pytest.fail(f"the node outlived its stop deadline:\n{log}")
        stopped_after = time.monotonic() - started
        poller.join(timeout=10)
        log = node.log_path.read_text()
        assert "the stop is late" not in log, log[-6000:]  # it stopped by itself, in time
        assert stopped_after < STOP_DEADLINE_S, stopped_after
        assert polled, "the long-poll never returned"
        assert message_state(node.home, message_id) in ("queued", "sent")  # kept, still owed
    finally:
        if idle is not None:
            idle.close()
