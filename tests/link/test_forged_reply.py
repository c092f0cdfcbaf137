"""What someone who can rewrite a batch reply can do with its unsigned parts (threat N8).

The reply's `results` and `next_expected` are not signed; only the sealed receipts in it are.
Between Washington's real delivery worker and Moscow's real inbox sits a hostile HTTP server on
127.0.0.1: it hands the batch to Moscow's inbox, then rewrites the reply. It can drop receipts
(the messages then stay queued and are sent again), claim envelopes were refused (an alarm and a
retry, but a delivered message stays delivered) and lie in `next_expected` (which no longer moves
the lower bound of the `expired` list in Washington's signed heartbeats).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, select

from hotline.core.encoding import b64encode
from hotline.core.envelope import HeartbeatPayload, decode_batch, open_envelope
from hotline.errors import ErrorCode, ProtocolError
from hotline.link import inbox, outbox
from hotline.link.delivery import PeerLink, TransportStatus, _Path
from hotline.link.inbox import Received
from hotline.link.transport_http import HttpTransport
from hotline.node.home import NodeHome
from hotline.store.messages import get_message, pending_outgoing
from hotline.store.schema import link_events

Rewrite = Callable[[inbox.Received], dict[str, Any]]


async def _hostile_server(m: NodeHome, rewrite: Rewrite) -> asyncio.Server:
    """Takes a batch to Moscow's real inbox, answers with ``rewrite`` of the true outcome."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            body = await reader.readexactly(length)
            result = inbox.receive(
                m.store,
                m.identity,
                m.peer_cards(),
                decode_batch(body),
                now=datetime.now(UTC),
                source="test",
            )
            data = json.dumps(rewrite(result)).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                + f"content-length: {len(data)}\r\nconnection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", 0)


def _link(w: NodeHome, url: str) -> PeerLink:
    async def receive(
        envelopes: list[bytes], source: str, also: Callable[[Connection], None] | None
    ) -> Received:
        return inbox.receive(
            w.store,
            w.identity,
            w.peer_cards(),
            envelopes,
            now=datetime.now(UTC),
            source=source,
            also=also,
        )

    link = PeerLink(
        identity=w.identity,
        store=w.store,
        peer=w.peer_card("moscow"),
        receive=receive,
        retry_cap_s=1.0,
        heartbeat_interval_s=5.0,
    )
    # The only transport is the hostile server (plain HTTP: what a path without TLS allows).
    link._paths = [_Path(TransportStatus(url, "direct"), http=HttpTransport(url))]
    return link


def _send(w: NodeHome, text: str, ttl: timedelta) -> str:
    return outbox.submit_message(
        w.store,
        w.identity,
        w.peer_card("moscow"),
        msg_type="free_text",
        priority="routine",
        body={"text": text, "lang": "en"},
        now=datetime.now(UTC),
        ttl=ttl,
    )


def _state(home: NodeHome, message_id: str) -> str:
    with home.store.read() as conn:
        view = get_message(conn, message_id, home.config.name)
    assert view is not None
    return view.state.value


def _true_results(result: inbox.Received) -> list[dict[str, Any]]:
    return [{"id": o.id, "status": o.status} for o in result.outcomes]


async def _deliver(w: NodeHome, m: NodeHome, rewrite: Rewrite) -> PeerLink:
    server = await _hostile_server(m, rewrite)
    port = server.sockets[0].getsockname()[1]
    link = _link(w, f"http://127.0.0.1:{port}")
    try:
        await link.deliver_once()
    finally:
        server.close()
        await server.wait_closed()
    return link


def test_a_forged_reply_cannot_mark_delivered_nor_hide_an_expired_message(pair):
    w, m = pair["washington"], pair["moscow"]
    lost = _send(w, "expires before it leaves", timedelta(milliseconds=1))
    time.sleep(0.01)
    kept = _send(w, "delivered, but its receipt is dropped", timedelta(hours=1))

    def lie(result: inbox.Received) -> dict[str, Any]:
        # No receipts; every envelope "accepted"; and Moscow "expects" far beyond seq 1.
        return {"receipts": [], "results": _true_results(result), "next_expected": 1000}

    async def run() -> PeerLink:
        link = _link(w, "http://127.0.0.1:9")  # first pass only expires `lost`: nothing sent
        assert await link.deliver_once() == 1
        await link.close()
        return await _deliver(w, m, lie)

    link = asyncio.run(run())
    assert _state(w, lost) == "expired"
    assert _state(m, kept) == "delivered"  # Moscow has it...
    assert _state(w, kept) == "sent"  # ...but only a sealed receipt says so to Washington
    with w.store.read() as conn:
        assert [o.id for o in pending_outgoing(conn, "moscow", 10)] == [kept]  # sent again
    # The forged next_expected does not move the bound: the signed heartbeat still declares
    # seq 1 expired, so Moscow fills its gap instead of keeping an unexplained one.
    assert link.status.peer_next_expected is None
    envelope = link.make_heartbeat(datetime.now(UTC), nonce="00" * 16, echo=None, next_expected=1)
    opened = open_envelope(m.identity, envelope, lambda name: m.peer_card(name).signing_key)
    assert isinstance(opened.payload, HeartbeatPayload)
    assert opened.payload.expired == [1]
    asyncio.run(link.close())


def test_forged_refusals_raise_an_alarm_but_cannot_undo_a_sealed_receipt(pair):
    w, m = pair["washington"], pair["moscow"]
    message_id = _send(w, "x", timedelta(hours=1))

    def lie(result: inbox.Received) -> dict[str, Any]:
        receipts = [b64encode(r) for r in result.receipts.get("washington", [])]
        refused = [
            {"id": o.id, "status": "rejected", "code": "malformed", "detail": "forged"}
            for o in result.outcomes
        ]
        return {"receipts": receipts, "results": refused, "next_expected": None}

    with pytest.raises(ProtocolError) as e:
        asyncio.run(_deliver(w, m, lie))
    assert e.value.code == ErrorCode.PEER_REFUSED
    assert _state(w, message_id) == "delivered"  # the sealed receipt decided
    with w.store.read() as conn:
        assert pending_outgoing(conn, "moscow", 10) == []
        failed = [
            r.detail
            for r in conn.execute(
                select(link_events).where(link_events.c.kind == "delivery_failed")
            )
        ]
    assert any("peer_refused" in d for d in failed)  # an operator sees the (false) refusal
