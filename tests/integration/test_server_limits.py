"""The HTTP server's own limits on a real node process: a request that arrives too slowly
(slow-loris, a body that never ends) or with an oversized head is cut off, an oversized body is
refused while it streams, and other clients are served meanwhile (hotline.node.limits)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from hotline.node.limits import (
    MAX_CONNECTIONS,
    MAX_CONNECTIONS_PER_ADDRESS,
    MAX_HEAD_BYTES,
    RESERVED_FILES,
)

pytestmark = pytest.mark.integration

#: The fixture's request deadline is 2 s; a connection still open long after it was never cut.
NEVER_CUT_S = 20.0


def _connect(node: Any) -> socket.socket:
    sock = socket.create_connection(
        (node.home.config.listen_host, node.home.config.listen_port), timeout=NEVER_CUT_S
    )
    return sock


def _closed_by_server(sock: socket.socket, trickle: bytes | None = None) -> bytes:
    """Everything the server sends until it closes the connection (trickling a byte a time)."""
    received = b""
    deadline = time.monotonic() + NEVER_CUT_S
    sock.settimeout(0.3)
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            if trickle is not None:
                try:
                    sock.sendall(trickle)
                except OSError:
                    return received
            continue
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk
    raise AssertionError(f"the connection was never closed (got {received[:200]!r})")


def test_slow_loris_and_endless_bodies_are_cut_off(exposed_node):
    node = exposed_node
    idle = _connect(node)  # connects and says nothing
    slow_head = _connect(node)
    slow_head.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    slow_body = _connect(node)
    slow_body.sendall(
        b"POST /v1/envelopes HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nHLB1"
    )
    # Meanwhile another client is served.
    assert httpx.get(f"{node.local_url}/healthz", timeout=5).status_code == 200
    assert _closed_by_server(idle) == b""
    assert _closed_by_server(slow_head, trickle=b"X") == b""
    assert _closed_by_server(slow_body, trickle=b"\x00") == b""
    for sock in (idle, slow_head, slow_body):
        sock.close()
    assert httpx.get(f"{node.local_url}/healthz", timeout=5).status_code == 200


def test_an_oversized_head_is_refused_and_the_connection_closed(exposed_node):
    sock = _connect(exposed_node)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    try:
        for _ in range(2 * MAX_HEAD_BYTES // 1000):
            sock.sendall(b"X-Filler: " + b"a" * 988 + b"\r\n")
    except OSError:
        pass  # closed while we were still sending: refused
    reply = _closed_by_server(sock)
    assert reply == b"" or reply.startswith(b"HTTP/1.1 400")
    if reply:  # in the documented error shape, not uvicorn's text/plain (found by schemathesis)
        assert b"content-type: application/json" in reply and b'"code": "too_large"' in reply
    sock.close()


def test_an_oversized_body_is_refused_over_http(exposed_node):
    response = httpx.post(
        f"{exposed_node.local_url}/v1/heartbeat",
        content=b"x" * (2 * 1024 * 1024),
        headers={"content-type": "application/vnd.hotline.envelope"},
        timeout=30,
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "too_large"


def _open_files_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])  # the soft limit
    raise AssertionError("no open-files line in /proc/PID/limits")


def _hold(node: Any, source: str, count: int) -> list[socket.socket]:
    """``count`` idle connections to ``node`` from the loopback address ``source``."""
    address = (node.home.config.listen_host, node.home.config.listen_port)
    return [
        socket.create_connection(address, timeout=10, source_address=(source, 0))
        for _ in range(count)
    ]


def _request_from(node: Any, source: str, *, until_refused: bool) -> bytes:
    """The reply to one request from ``source`` on a new connection, once the server closed it.
    With ``until_refused``, again until it is a 503 (the server accepts held connections
    meanwhile), asking for no close: the server must close a refused connection by itself."""
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
    if not until_refused:
        request += b"Connection: close\r\n"
    deadline = time.monotonic() + NEVER_CUT_S
    while True:
        (sock,) = _hold(node, source, 1)
        with sock:
            sock.sendall(request + b"\r\n")
            reply = _closed_by_server(sock)
        if not until_refused or reply.startswith(b"HTTP/1.1 503"):
            return reply
        assert time.monotonic() < deadline, f"never refused: {reply[:200]!r}"


def _overloaded_detail(reply: bytes) -> str:
    """The detail of a 503 ``overloaded`` answer in the error shape, with ``retry-after``; the
    server closed the connection after it (``_closed_by_server`` returned) and said so."""
    assert reply.startswith(b"HTTP/1.1 503"), reply[:200]
    head, body = reply.split(b"\r\n\r\n", 1)
    assert b"retry-after: 1" in head.lower()
    assert b"connection: close" in head.lower()
    error = json.loads(body)["error"]
    assert error["code"] == "overloaded"
    return str(error["detail"])


def _serves_again(node: Any) -> None:
    deadline = time.monotonic() + NEVER_CUT_S
    while True:
        try:
            if httpx.get(f"{node.local_url}/healthz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the node did not serve again"
        time.sleep(0.1)


def test_the_connection_cap_answers_503_in_the_error_shape_and_the_node_recovers(
    low_file_limit_node,
):
    node = low_file_limit_node
    assert node.process is not None
    # Started with 1,024 open files at most: it raised its own soft limit to what the cap needs.
    assert _open_files_limit(node.process.pid) >= MAX_CONNECTIONS + RESERVED_FILES
    # From several addresses, each within its own cap (the loopback network is all ours).
    per_source = MAX_CONNECTIONS_PER_ADDRESS
    sources = [f"127.0.0.{2 + i}" for i in range(-(-MAX_CONNECTIONS // per_source))]
    held = [sock for source in sources for sock in _hold(node, source, per_source)]
    assert len(held) >= MAX_CONNECTIONS
    try:
        detail = _overloaded_detail(_request_from(node, "127.0.0.99", until_refused=True))
        assert f"at most {MAX_CONNECTIONS}" in detail
    finally:
        for sock in held:
            sock.close()
    _serves_again(node)


def test_one_address_cannot_hold_every_connection(low_file_limit_node):
    node = low_file_limit_node
    held = _hold(node, "127.0.0.2", MAX_CONNECTIONS_PER_ADDRESS)
    try:
        detail = _overloaded_detail(_request_from(node, "127.0.0.2", until_refused=True))
        assert "from 127.0.0.2" in detail
        assert f"at most {MAX_CONNECTIONS_PER_ADDRESS} from one address" in detail
        # Another address is served meanwhile.
        assert _request_from(node, "127.0.0.3", until_refused=False).startswith(b"HTTP/1.1 200")
    finally:
        for sock in held:
            sock.close()
    # Once they are closed, that address is served again.
    deadline = time.monotonic() + NEVER_CUT_S
    while not _request_from(node, "127.0.0.2", until_refused=False).startswith(b"HTTP/1.1 200"):
        assert time.monotonic() < deadline, "the address was not served again"
        time.sleep(0.1)
