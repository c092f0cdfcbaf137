"""The transaction that queues messages hands the outbox it left to the delivery worker
(``PeerLink.hand_over``), which then sends without reading the store again; a list handed over
while a batch is on its way names that batch and is dropped, so nothing goes twice.

Washington's real delivery worker talks to Moscow's real inbox through a plain HTTP server on
127.0.0.1 that records every envelope it carries and can hold its answer back.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection

from hotline.core.encoding import b64encode
from hotline.core.envelope import decode_batch, read_header
from hotline.link import delivery, inbox, outbox
from hotline.link.delivery import PeerLink, TransportStatus, _Path
from hotline.link.inbox import Received
from hotline.link.transport_http import HttpTransport
from hotline.node.home import NodeHome
from hotline.store.messages import get_message, pending_outgoing


class _Moscow:
    """Moscow's inbox behind a server that records what it carried; ``hold`` (when set) keeps
    the answer back until it is cleared."""

    def __init__(self, m: NodeHome) -> None:
        self.m = m
        self.carried: list[str] = []
        self.arrived = asyncio.Event()
        self.hold: asyncio.Event | None = None

    async def answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            envelopes = decode_batch(await reader.readexactly(length))
            self.carried += [read_header(e).envelope_id for e in envelopes]
            self.arrived.set()
            if self.hold is not None:
                await self.hold.wait()
            result = inbox.receive(
                self.m.store,
                self.m.identity,
                self.m.peer_cards(),
                envelopes,
                now=datetime.now(UTC),
                source="test",
            )
            data = json.dumps(
                {
                    "receipts": [b64encode(r) for r in result.receipts.get("washington", [])],
                    "results": [o.to_dict() for o in result.outcomes],
                    "next_expected": None,
                }
            ).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                + f"content-length: {len(data)}\r\nconnection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        finally:
            writer.close()


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
    link._paths = [_Path(TransportStatus(url, "direct"), http=HttpTransport(url))]
    return link


def _queue(w: NodeHome, link: PeerLink, text: str) -> str:
    """Queue one message and hand the outbox over, as ``Node.send_many`` does."""
    draft = outbox.Draft(
        w.peer_card("moscow"),
        "free_text",
        "routine",
        {"text": text, "lang": "en"},
        timedelta(hours=1),
    )
    with w.store.write() as conn:
        (message_id,) = outbox.queue_messages(conn, w.identity, [draft], now=datetime.now(UTC))
        pending = pending_outgoing(conn, "moscow", link.outbox_limit())
    link.hand_over(pending)
    return message_id


def _state(home: NodeHome, message_id: str) -> str:
    with home.store.read() as conn:
        view = get_message(conn, message_id, home.config.name)
    assert view is not None
    return view.state.value


def test_the_worker_sends_what_the_queuing_transaction_handed_over(pair, monkeypatch):
    w, m = pair["washington"], pair["moscow"]
    moscow = _Moscow(m)

    async def run() -> tuple[str, str]:
        server = await asyncio.start_server(moscow.answer, "127.0.0.1", 0)
        link = _link(w, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
        try:
            message_id = _queue(w, link, "one")

            def no_read(*_: object) -> None:
                raise AssertionError("the worker read the outbox again")

            with monkeypatch.context() as patched:
                patched.setattr(delivery, "pending_outgoing", no_read)
                assert await link.deliver_once() == 1
            # Nothing handed over now: the next look reads the store, and finds nothing left.
            assert await link.deliver_once() == 0
            return message_id, moscow.carried[0]
        finally:
            await link.close()
            server.close()
            await server.wait_closed()

    message_id, carried = asyncio.run(run())
    assert carried == message_id
    assert _state(w, message_id) == "delivered"
    assert _state(m, message_id) == "delivered"


@pytest.mark.parametrize("later", [1, 3])
def test_an_outbox_handed_over_while_a_batch_is_on_its_way_is_not_sent_again(pair, later):
    w, m = pair["washington"], pair["moscow"]
    moscow = _Moscow(m)

    async def run() -> list[str]:
        server = await asyncio.start_server(moscow.answer, "127.0.0.1", 0)
        link = _link(w, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
        try:
            first = _queue(w, link, "first")
            moscow.hold = asyncio.Event()
            sending = asyncio.create_task(link.deliver_once())
            await moscow.arrived.wait()
            # Queued while `first` is on its way: the list handed over still names `first`.
            queued = [_queue(w, link, f"later {i}") for i in range(later)]
            moscow.hold.set()
            moscow.hold = None
            assert await sending == 1
            assert await link.deliver_once() == later
            assert await link.deliver_once() == 0
            return [first, *queued]
        finally:
            await link.close()
            server.close()
            await server.wait_closed()

    ids = asyncio.run(run())
    assert moscow.carried == ids  # each once, in order
    assert [_state(w, i) for i in ids] == ["delivered"] * len(ids)


def test_nothing_is_handed_over_while_the_peer_s_key_is_revoked(pair):
    """Envelopes queued while the peer's key is revoked are sealed again once its new key is
    confirmed (another transaction): a list read before that would name the old bytes."""
    w = pair["washington"]
    link = _link(w, "http://127.0.0.1:9")
    link.blocked = "moscow's key is revoked"
    assert not link.takes_hand_over
    _queue(w, link, "held")
    assert link._handed is None
    link.blocked = None
    assert link.takes_hand_over
    asyncio.run(link.close())
