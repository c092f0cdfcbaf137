"""The server's writes: what one turn of the event loop writes leaves in one write (a response's
head and body: one TLS record, one system call), nothing is lost when the connection closes,
and nothing is sent after it was aborted."""

from __future__ import annotations

import asyncio
from typing import Any

from hotline.node.limits import _OneWritePerTurn


class _Recorder(asyncio.Transport):
    """asyncio's transport interface, recording what reaches the socket."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: Any) -> None:
        self.sent.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 4242) if name == "peername" else default


def _run(scenario: Any) -> None:
    asyncio.run(scenario())


def test_a_response_made_in_one_turn_leaves_in_one_write() -> None:
    async def scenario() -> None:
        socket = _Recorder()
        writer = _OneWritePerTurn(socket, asyncio.get_running_loop())
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n")
        writer.write(memoryview(b"body"))
        assert socket.sent == []  # not yet: the turn is not over
        await asyncio.sleep(0)
        assert socket.sent == [b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nbody"]
        writer.write(b"next")  # a later turn: a write of its own
        await asyncio.sleep(0)
        assert socket.sent[1:] == [b"next"]

    _run(scenario)


def test_close_sends_what_is_pending_first() -> None:
    async def scenario() -> None:
        socket = _Recorder()
        writer = _OneWritePerTurn(socket, asyncio.get_running_loop())
        writer.write(b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n")
        writer.write(b"{}")
        writer.close()
        assert socket.sent == [b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n{}"]
        assert socket.closed
        await asyncio.sleep(0)
        assert len(socket.sent) == 1  # the scheduled flush finds nothing left

    _run(scenario)


def test_abort_drops_what_is_pending_and_nothing_goes_to_a_closed_socket() -> None:
    async def scenario() -> None:
        socket = _Recorder()
        writer = _OneWritePerTurn(socket, asyncio.get_running_loop())
        writer.write(b"half a response")
        writer.abort()
        await asyncio.sleep(0)
        assert socket.sent == [] and socket.aborted

        socket = _Recorder()
        writer = _OneWritePerTurn(socket, asyncio.get_running_loop())
        writer.write(b"late")
        socket.closed = True  # the peer went away within the turn
        await asyncio.sleep(0)
        assert socket.sent == []

    _run(scenario)


def test_everything_else_is_the_transport_s() -> None:
    async def scenario() -> None:
        socket = _Recorder()
        writer = _OneWritePerTurn(socket, asyncio.get_running_loop())
        assert writer.get_extra_info("peername") == ("127.0.0.1", 4242)
        assert not writer.is_closing()
        socket.closed = True
        assert writer.is_closing()

    _run(scenario)


def test_a_complete_response_leaves_before_other_ready_work_runs() -> None:
    """On the sender, the long-poll a DELIVERED receipt woke answered only after the delivery
    worker's next look at the outbox (a read transaction, ready in the same turn): a complete
    response now leaves when uvicorn reports it complete, not at the end of the turn."""
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from hotline.node.limits import guarded_protocol

    seen_by_other_work: list[list[bytes]] = []

    async def scenario() -> None:
        socket = _Recorder()
        loop = asyncio.get_running_loop()
        done = asyncio.Event()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            # Work that became ready before the response was written (the delivery worker).
            loop.call_soon(lambda: seen_by_other_work.append(list(socket.sent)))
            headers = [(b"content-length", b"2")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"ok"})
            done.set()

        config = Config(app=app, lifespan="off", log_config=None)
        config.load()
        protocol = guarded_protocol(30.0)(  # type: ignore[call-arg]
            config=config, server_state=ServerState(), app_state={}
        )
        protocol.connection_made(socket)
        protocol.data_received(b"GET / HTTP/1.1\r\nhost: node\r\n\r\n")
        await done.wait()
        await asyncio.sleep(0)
        assert len(socket.sent) == 1 and socket.sent[0].endswith(b"\r\n\r\nok")
        protocol.connection_lost(None)

    _run(scenario)
    assert len(seen_by_other_work) == 1
    assert len(seen_by_other_work[0]) == 1  # the whole response had left, in one write
