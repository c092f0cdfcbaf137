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

from hotline.node.limits import MAX_CONNECTIONS, MAX_HEAD_BYTES, RESERVED_FILES

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


def test_the_connection_cap_answers_503_in_the_error_shape_and_the_node_recovers(
    low_file_limit_node,
):
    node = low_file_limit_node
    assert node.process is not None
    # Started with 1,024 open files at most: it raised its own soft limit to what the cap needs.
    assert _open_files_limit(node.process.pid) >= MAX_CONNECTIONS + RESERVED_FILES
    address = (node.home.config.listen_host, node.home.config.listen_port)
    held = [socket.create_connection(address, timeout=10) for _ in range(MAX_CONNECTIONS)]
    try:
        reply = b""
        deadline = time.monotonic() + NEVER_CUT_S
        while not reply.startswith(b"HTTP/1.1 503") and time.monotonic() < deadline:
            with socket.create_connection(address, timeout=10) as extra:
                extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                reply = _closed_by_server(extra)  # the server accepts the held ones meanwhile
        assert reply.startswith(b"HTTP/1.1 503"), reply[:200]
        head, body = reply.split(b"\r\n\r\n", 1)
        assert b"retry-after: 1" in head.lower()
        assert json.loads(body)["error"]["code"] == "overloaded"
    finally:
        for sock in held:
            sock.close()
    # Once the connections are gone, the node serves again.
    deadline = time.monotonic() + NEVER_CUT_S
    while True:
        try:
            if httpx.get(f"{node.local_url}/healthz", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the node did not serve again"
        time.sleep(0.1)
