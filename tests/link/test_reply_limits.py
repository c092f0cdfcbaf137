"""A peer (or whoever answers for it on a plain-HTTP path) that answers our requests with an
endless body: the reply is cut off at MAX_REPLY_BYTES while it streams, with a typed error
(threat model N12). The hostile server is a real socket on 127.0.0.1 that never ends its reply."""

from __future__ import annotations

import asyncio

import pytest

from hotline.errors import TransportError
from hotline.link.transport_http import MAX_REPLY_BYTES, HttpTransport

CHUNK = 64 * 1024


async def _endless_server(sent: list[int]) -> asyncio.Server:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")  # the request head; the body is not read
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"transfer-encoding: chunked\r\n\r\n"
            )
            chunk = f"{CHUNK:x}\r\n".encode() + b"[" * CHUNK + b"\r\n"
            while True:  # far more than any limit, until the client hangs up
                writer.write(chunk)
                await writer.drain()
                sent[0] += CHUNK
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", 0)


@pytest.mark.parametrize("request_kind", ["batch", "heartbeat", "proof"])
def test_an_endless_reply_is_cut_off_at_the_limit_with_a_typed_error(request_kind: str) -> None:
    async def run() -> tuple[TransportError, int]:
        sent = [0]
        server = await _endless_server(sent)
        port = server.sockets[0].getsockname()[1]
        transport = HttpTransport(f"http://127.0.0.1:{port}")
        try:
            with pytest.raises(TransportError) as e:
                if request_kind == "batch":
                    await transport.send_batch([b"x"])
                elif request_kind == "heartbeat":
                    await transport.send_heartbeat(b"x")
                else:
                    await transport.get("/v1/transcript/consistency", {"first": 1, "second": 2})
            return e.value, sent[0]
        finally:
            await transport.close()
            server.close()
            await server.wait_closed()

    error, sent = asyncio.run(run())
    assert f"reply over {MAX_REPLY_BYTES} bytes" in error.detail
    # Refused once the limit passed, not after reading an unbounded reply.
    assert MAX_REPLY_BYTES < sent < 2 * MAX_REPLY_BYTES
