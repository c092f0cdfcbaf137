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
