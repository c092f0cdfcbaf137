"""The link's HTTP/1.1 client transport (hotline.link.http_client) against raw servers that
answer whatever a test scripts: well-formed replies in every framing, kept-alive connections,
and every way a hostile or broken server can answer, each an httpx error, never another
exception, a hang or a reused broken connection."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hotline.link.http_client import MAX_RESPONSE_HEAD_BYTES, AsyncStreamTransport

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + (await reader.readexactly(length) if length else b"")


async def _with_server(handler: Handler, client_work: Callable[[str], Awaitable[object]]) -> object:
    connections: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await client_work(f"http://127.0.0.1:{port}")
    finally:
        server.close()
        await server.wait_closed()
    return result, len(connections)


def _client(read_timeout: float = 2.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=AsyncStreamTransport(), timeout=httpx.Timeout(read_timeout, connect=2.0)
    )


def _run(handler: Handler, work: Callable[[httpx.AsyncClient, str], Awaitable[object]]) -> object:
    async def main() -> object:
        async with _client() as client:
            return await _with_server(handler, lambda base: work(client, base))

    return asyncio.run(main())


def test_requests_are_sent_whole_and_connections_kept_alive() -> None:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            request = await _read_request(reader)
            seen.append(request)
            body = request.split(b"\r\n\r\n", 1)[1][::-1]
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()

    async def work(client: httpx.AsyncClient, base: str) -> list[bytes]:
        return [
            (await client.post(f"{base}/v1/x?a=1", content=b"abc%d" % i)).content for i in range(5)
        ]

    replies, connections = _run(handler, work)  # type: ignore[misc]
    assert replies == [b"%dcba" % i for i in range(5)]
    assert connections == 1
    assert seen[0].startswith(b"POST /v1/x?a=1 HTTP/1.1\r\n")
    assert b"\r\nhost: 127.0.0.1:" in seen[0].lower()


CHUNKED = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"


CHUNKED = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"


@pytest.mark.parametrize(
    "reply, body",
    [
        (CHUNKED, b"abcde"),
        (b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\nno", b"no"),
        (b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end", b"until the end"),
    ],
)
def test_every_framing_is_read(reply: bytes, body: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(reply)
        await writer.drain()

    async def work(client: httpx.AsyncClient, base: str) -> bytes:
        return (await client.get(f"{base}/")).content

    got, _ = _run(handler, work)  # type: ignore[misc]
    assert got == body


def test_an_idle_connection_the_server_closed_is_replaced() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        # then the server forgets the connection (an idle timeout, a restart)

    async def work(client: httpx.AsyncClient, base: str) -> list[int]:
        statuses = []
        for _ in range(3):
            statuses.append((await client.get(f"{base}/")).status_code)
            await asyncio.sleep(0.05)
        return statuses

    statuses, connections = _run(handler, work)  # type: ignore[misc]
    assert statuses == [200, 200, 200]
    assert connections == 3


HOSTILE = {
    "truncated body": b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc",
    "not HTTP": b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
    "bad status line": b"HTTP/1.1 2x0 OK\r\n\r\n",
    "bad chunk": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
    "two lengths": b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab",
    "nothing": b"",
    "endless head": b"HTTP/1.1 200 OK\r\n" + b"x-pad: " + b"a" * (MAX_RESPONSE_HEAD_BYTES + 10),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_broken_reply_is_an_httpx_error_and_the_connection_is_dropped(name: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(HOSTILE[name])
        await writer.drain()

    async def work(client: httpx.AsyncClient, base: str) -> str:
        with pytest.raises(httpx.HTTPError) as caught:
            await client.get(f"{base}/")
        return type(caught.value).__name__

    error, _ = _run(handler, work)  # type: ignore[misc]
    assert error in ("RemoteProtocolError", "ReadError"), error


def test_a_server_that_never_answers_is_a_read_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(30)

    async def work(client: httpx.AsyncClient, base: str) -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(httpx.ReadTimeout):
            await client.get(f"{base}/", timeout=0.3)
        return loop.time() - started

    elapsed, _ = _run(handler, work)  # type: ignore[misc]
    assert elapsed < 5


def test_nobody_listening_is_a_connect_error() -> None:
    async def main() -> None:
        async with _client() as client:
            with pytest.raises(httpx.ConnectError):
                await client.get("http://127.0.0.1:9/")

    asyncio.run(main())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), st.booleans())
def test_any_reply_bytes_give_a_response_or_an_httpx_error(reply: bytes, prefix: bool) -> None:
    data = (b"HTTP/1.1 200 OK\r\n" if prefix else b"") + reply

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(data)
        await writer.drain()

    async def work(client: httpx.AsyncClient, base: str) -> None:
        try:
            response = await client.get(f"{base}/", timeout=0.5)
        except httpx.HTTPError:
            return
        assert 100 <= response.status_code <= 999

    _run(handler, work)
