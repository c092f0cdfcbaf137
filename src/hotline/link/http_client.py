"""An httpx transport on asyncio's own streams: the link's HTTP/1.1 client.

httpx's default transport runs TLS through anyio, which feeds OpenSSL from Python a buffer at a
time; on the node's event loop (uvloop) that was a fifth of the sender's CPU per message. Here a
connection is ``asyncio.open_connection`` (TLS in the loop's native SSL transport) and responses
are parsed by httptools (llhttp, the parser uvicorn serves with). httpx stays the client API:
requests, timeouts, streaming and errors are httpx's, so callers do not change.

Everything read is untrusted: a status line, header or body the parser refuses, a connection
closed before the response ends, or a response not complete within the read timeout is an
``httpx`` error; a connection is kept for another request only after a complete response that
allows it.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httptools
import httpx

#: Most bytes of a response's status line and headers.
MAX_RESPONSE_HEAD_BYTES = 64 * 1024
#: Bytes asked of the socket at a time.
READ_CHUNK = 64 * 1024


@dataclass(eq=False)
class _Parsed:
    """What httptools reported of one response so far (its callbacks land here)."""

    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    parser: httptools.HttpResponseParser | None = None
    #: Asked while the head is complete: llhttp forgets it once the message ends.
    keep_alive: bool = False
    head_done: bool = False
    done: bool = False
    body: list[bytes] = field(default_factory=list)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.head_done = True
        self.keep_alive = self.parser is not None and self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done = True


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        # abort: nothing to say goodbye for, and a TLS close would wait on the peer.
        self.writer.transport.abort()

    @property
    def usable(self) -> bool:
        return not self.writer.transport.is_closing() and not self.reader.at_eof()


def _timeouts(request: httpx.Request) -> tuple[float | None, float | None, float | None]:
    timeout = request.extensions.get("timeout", {})
    return timeout.get("connect"), timeout.get("read"), timeout.get("write")


class _Body(httpx.AsyncByteStream):
    """The body of one response as it arrives; gives the connection back (or closes it) at
    the end."""

    def __init__(self, transport: AsyncStreamTransport, exchange: _Exchange) -> None:
        self._transport = transport
        self._exchange = exchange

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._exchange.body():
            yield chunk

    async def aclose(self) -> None:
        self._transport._finished(self._exchange)


class _Exchange:
    """One request and its response on one connection."""

    def __init__(self, key: tuple[str, str, int], connection: _Connection, request: httpx.Request):
        self.key = key
        self.connection = connection
        self.request = request
        self.parsed = _Parsed()
        self.parser = httptools.HttpResponseParser(self.parsed)
        self.parsed.parser = self.parser
        self.head_bytes = 0
        self.eof_delimited = False
        self.broken = False
        _, self.read_timeout, self.write_timeout = _timeouts(request)

    async def send(self) -> None:
        request = self.request
        target = request.url.raw_path.decode("ascii")
        lines = [f"{request.method} {target} HTTP/1.1".encode("ascii")]
        lines += [name + b": " + value for name, value in request.headers.raw]
        body = await request.aread()
        data = b"\r\n".join(lines) + b"\r\n\r\n" + body
        writer = self.connection.writer
        writer.write(data)
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for runs the awaited coroutine as a
        # task of its own, two more turns of the event loop per call, and the link makes one
        # call per write and per read of every request.
        try:
            async with asyncio.timeout(self.write_timeout):
                await writer.drain()
        except TimeoutError as e:
            raise httpx.WriteTimeout("the request was not sent in time", request=request) from e
        except OSError as e:
            raise httpx.WriteError(f"sending the request: {e}", request=request) from e

    async def _feed_more(self) -> bool:
        """Read once and parse it; False at the end of the stream."""
        try:
            async with asyncio.timeout(self.read_timeout):
                data = await self.connection.reader.read(READ_CHUNK)
        except TimeoutError as e:
            raise httpx.ReadTimeout("no response in time", request=self.request) from e
        except (OSError, ssl.SSLError) as e:
            raise httpx.ReadError(f"reading the response: {e}", request=self.request) from e
        if not data:
            return False
        if not self.parsed.head_done:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            raise httpx.RemoteProtocolError("unexpected upgrade", request=self.request) from e
        except httptools.HttpParserError as e:
            raise httpx.RemoteProtocolError(f"malformed response: {e}", request=self.request) from e
        if not self.parsed.head_done and self.head_bytes > MAX_RESPONSE_HEAD_BYTES:
            raise httpx.RemoteProtocolError("response head too large", request=self.request)
        return True

    async def receive_head(self, stream: httpx.AsyncByteStream) -> httpx.Response:
        while not self.parsed.head_done:
            if not await self._feed_more():
                raise httpx.RemoteProtocolError(
                    "the server closed the connection before a response", request=self.request
                )
        names = {name.lower() for name, _ in self.parsed.headers}
        self.eof_delimited = (
            b"content-length" not in names
            and b"transfer-encoding" not in names
            and self.request.method != "HEAD"
        )
        return httpx.Response(
            self.parser.get_status_code(),
            headers=self.parsed.headers,
            stream=stream,
            request=self.request,
        )

    async def body(self) -> AsyncIterator[bytes]:
        while True:
            while self.parsed.body:
                yield self.parsed.body.pop(0)
            if self.parsed.done:
                return
            if not await self._feed_more():
                if self.eof_delimited:
                    self.parsed.done = True
                    self.broken = True  # the connection ended the body: not reusable
                    continue
                raise httpx.RemoteProtocolError(
                    "the server closed the connection before the response ended",
                    request=self.request,
                )

    @property
    def reusable(self) -> bool:
        return (
            self.parsed.done
            and not self.broken
            and not self.parsed.body
            and self.parsed.keep_alive
            and self.connection.usable
        )


class AsyncStreamTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 to any endpoint, keeping up to ``max_idle`` idle connections per endpoint.

    ``ssl_context`` is used for https URLs (the caller's pinned context); a host name is sent
    for SNI, but which certificate is trusted is the context's business alone.
    """

    def __init__(self, ssl_context: ssl.SSLContext | None = None, max_idle: int = 2) -> None:
        self._ssl = ssl_context
        self._max_idle = max_idle
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._active: set[_Exchange] = set()

    async def _connect(self, key: tuple[str, str, int], request: httpx.Request) -> _Connection:
        scheme, host, port = key
        context: ssl.SSLContext | None = None
        if scheme == "https":
            context = self._ssl or ssl.create_default_context()
        connect_timeout, _, _ = _timeouts(request)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    host,
                    port,
                    ssl=context,
                    server_hostname=host if context is not None else None,
                    limit=READ_CHUNK,
                ),
                connect_timeout,
            )
        except TimeoutError as e:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port}", request=request) from e
        except (OSError, ssl.SSLError) as e:
            raise httpx.ConnectError(f"connecting to {host}:{port}: {e}", request=request) from e
        return _Connection(reader, writer)

    def _pooled(self, key: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(key, [])
        while idle:
            connection = idle.pop()
            if connection.usable:
                return connection
            connection.close()
        return None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported scheme {url.scheme!r}", request=request)
        port = url.port or (443 if url.scheme == "https" else 80)
        key = (url.scheme, url.host, port)
        connection = self._pooled(key)
        if connection is not None:
            try:
                return await self._exchange(key, connection, request)
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
                # An idle connection the server had closed meanwhile: once more, on a new one.
                # Resending is safe here: a duplicate envelope gets its receipt again, and a
                # signed relay request seen twice is refused, not carried out twice.
                pass
        return await self._exchange(key, await self._connect(key, request), request)

    async def _exchange(
        self, key: tuple[str, str, int], connection: _Connection, request: httpx.Request
    ) -> httpx.Response:
        exchange = _Exchange(key, connection, request)
        self._active.add(exchange)
        try:
            await exchange.send()
            return await exchange.receive_head(_Body(self, exchange))
        except BaseException:
            self._active.discard(exchange)
            connection.close()
            raise

    def _finished(self, exchange: _Exchange) -> None:
        if exchange not in self._active:
            return
        self._active.discard(exchange)
        idle = self._idle.setdefault(exchange.key, [])
        if exchange.reusable and len(idle) < self._max_idle:
            idle.append(exchange.connection)
        else:
            exchange.connection.close()

    async def aclose(self) -> None:
        for exchange in list(self._active):
            exchange.connection.close()
        self._active.clear()
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()


__all__ = ["MAX_RESPONSE_HEAD_BYTES", "AsyncStreamTransport"]
