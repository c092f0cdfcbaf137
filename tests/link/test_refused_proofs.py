"""A peer that will not prove its own signed heads consistent (threat P18: it truncated its log,
or hides a fork) raises an equivocation alarm after three refusals; a peer that cannot be
reached gives no verdict and raises nothing. Moscow's real node checks Washington's heads
against a real HTTP server on 127.0.0.1 that answers for Washington."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from hotline.errors import TransportError
from hotline.node.home import NodeHome
from hotline.node.runtime import Node
from hotline.store.schema import security_events
from hotline.transcript.heads import mark_checked, peer_heads, record_peer_head


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def moscow(tmp_path: Path):
    """Moscow's node, holding two signed heads of Washington's log: size 2 (checked) and 5."""
    now = datetime.now(UTC)
    port = _free_port()
    homes = {
        name: NodeHome.init(
            tmp_path / name,
            name=name,
            listen=f"127.0.0.1:{port if name == 'washington' else _free_port()}",
            display_names={"en": name},
            tls=False,
        )
        for name in ("washington", "moscow")
    }
    card = homes["washington"].card(now)
    homes["moscow"].add_peer(card, card.fingerprint, now)
    m = homes["moscow"]
    with m.store.write() as conn:
        for size in (2, 5):
            record_peer_head(
                conn,
                peer="washington",
                size=size,
                root=hashlib.sha256(bytes([size])).digest(),
                kind="tree-head",
                evidence=b"",
                now_us=0,
            )
        first = peer_heads(conn, "washington")[0]
        mark_checked(conn, first.id, consistent=True)
    yield Node(m), port
    for home in homes.values():
        home.close()


def _alarms(node: Node) -> list[str]:
    with node.store.read() as conn:
        return list(
            conn.execute(
                select(security_events.c.detail).where(security_events.c.code == "equivocation")
            ).scalars()
        )


def _checked(node: Node) -> list[int]:
    with node.store.read() as conn:
        return [h.checked for h in peer_heads(conn, "washington")]


async def _refusing_server(port: int, requests: list[str]) -> asyncio.Server:
    """Answers every request 404 in the API's error shape, as a log cut short would."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        requests.append(head.split(b" ", 2)[1].decode())
        body = json.dumps({"error": {"code": "not_found", "detail": "no such size"}}).encode()
        writer.write(
            b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\n"
            + f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", port)


def test_an_unreachable_peer_gives_no_verdict(moscow) -> None:
    node, _port = moscow
    with pytest.raises(TransportError):
        asyncio.run(node.check_peer_heads("washington"))
    assert _alarms(node) == [] and _checked(node) == [1, 0]


def test_a_peer_refusing_to_prove_its_heads_raises_equivocation(moscow) -> None:
    node, port = moscow
    requests: list[str] = []

    async def check() -> int:
        server = await _refusing_server(port, requests)
        try:
            return await node.check_peer_heads("washington")
        finally:
            server.close()
            await server.wait_closed()

    assert asyncio.run(check()) == 0
    (alarm,) = _alarms(node)
    assert "refused to prove its head of size 5" in alarm and "(3 attempts)" in alarm
    assert _checked(node) == [1, 2]  # the head stays marked as part of the alarm
    # One chain request (refused: no verdict), then the pairwise proof asked three times.
    assert sum("consistency-chain" in r for r in requests) == 1
    assert sum(r.startswith("/v1/transcript/consistency?") for r in requests) == 3
