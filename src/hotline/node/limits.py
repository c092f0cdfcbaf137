"""Request rate limits: per source address, and per peer on the link endpoints.

A token bucket per key: ``burst`` requests at once, refilled at ``per_second``. Per source
address (``allow``): requests over the limit get ``429 rate_limited`` before any parsing or
cryptography, so one flooding address cannot starve the node's other peers.

Per peer (``peek`` then ``charge``): the bucket of the sender *claimed* in a routing header is
looked at before any cryptography (empty: 429), but a token is taken only once the request
proved to come from that peer. A peer that floods from many addresses runs out of its one
budget; a stranger who writes an honest peer's name into forged headers spends nothing of it.

The number of keys tracked is bounded (the least recently seen are forgotten), so spoofed
sources or names cannot grow memory without limit.
"""

from __future__ import annotations

import asyncio
import faulthandler
import json
import logging
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: Most source addresses whose buckets are kept at once.
MAX_TRACKED_SOURCES = 10_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, per_second: float, burst: float) -> None:
        if per_second <= 0 or burst < 1:
            raise ValueError("a rate limit needs per_second > 0 and burst >= 1")
        self.per_second = per_second
        self.burst = burst
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def _refilled(self, key: str, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
            self._buckets[key] = bucket
            if len(self._buckets) > MAX_TRACKED_SOURCES:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.per_second)
            bucket.updated = now
        return bucket

    def allow(self, source: str, now: float) -> bool:
        """Take one token from ``source``'s bucket at monotonic time ``now``; False if empty."""
        bucket = self._refilled(source, now)
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    def peek(self, key: str, now: float) -> bool:
        """Whether ``key``'s bucket holds a token at ``now``, taking none."""
        return self._refilled(key, now).tokens >= 1

    def charge(self, key: str, now: float) -> None:
        """Take one token from ``key``'s bucket for a request already served.

        Requests that passed ``peek`` together may overdraw the bucket; the debt is kept (down
        to one burst below zero, so a debt is always repaid within ``2 * burst / per_second``)
        and later requests wait until it is repaid.
        """
        bucket = self._refilled(key, now)
        bucket.tokens = max(-self.burst, bucket.tokens - 1)


# -- the HTTP server's own limits (slow-loris, oversized heads, connection count) ------------

#: Most bytes of a request line and headers; more and the connection is answered 400 and closed.
MAX_HEAD_BYTES = 64 * 1024
#: Most connections served at once; a request on one more is answered 503 ``overloaded``.
MAX_CONNECTIONS = 1024
#: Most connections from one source address at once (a quarter of the total): a request on one
#: more is answered 503 ``overloaded`` too, so that one address cannot hold every connection the
#: node has while its peers and operators wait (threat model F8).
MAX_CONNECTIONS_PER_ADDRESS = MAX_CONNECTIONS // 4
#: File descriptors a node needs besides its connections: the store, logs, key files, its own
#: connections to peers, relays and witnesses.
RESERVED_FILES = 256
#: Where a request's ASGI scope state says that it came over a connection cap (which one, in
#: words: the detail of its 503 answer).
OVERLOADED = "hotline.overloaded"
#: Longest a stopping server waits for requests in flight (long-polls end sooner than their
#: timeout); after it they are cancelled, which is safe: every store change is one transaction.
SHUTDOWN_GRACE_S = 3
#: Longest a stopping process lives after SIGTERM or SIGINT. The node's tasks and links get
#: what is left after the grace; then the Python stacks are written to stderr and the process
#: ends with exit code 1. That is as safe as a kill -9 (every accepted message is committed
#: before it is reported), and a supervisor or an operator is never left waiting.
STOP_DEADLINE_S = SHUTDOWN_GRACE_S + 4


class _OneWritePerTurn:
    """The server's transport, with the writes made in one turn of the event loop sent as one.

    uvicorn writes a response's head and body separately: over TLS each write is its own
    record and system call, and the client wakes for the head only to wait for the body. A
    response made at once (every response of the link and the operator API) now leaves in one
    write, at the end of the turn that made it (``loop.call_soon``: before the loop waits for
    I/O again), or as soon as uvicorn reports the response complete (``flush``), whichever
    comes first. Closing sends what is pending first; aborting drops it.
    """

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(bytes(data))

    def flush(self) -> None:
        """Send what is pending now (a complete response: nothing more will join it)."""
        self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending = []
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def raise_open_file_limit() -> int:
    """Raise this process's soft limit on open files to what MAX_CONNECTIONS needs, within the
    hard limit, and return the soft limit in force. Service managers often start processes with
    a soft limit of 1,024: the file table would then run out before the connection cap, and
    accept() and the store's own files would fail instead of the documented 503."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = MAX_CONNECTIONS + RESERVED_FILES
    if soft != resource.RLIM_INFINITY and soft < needed:
        soft = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning(
            "at most %d open files (the hard limit); %d connections and the store need %d: "
            "raise the limit (systemd: LimitNOFILE=)",
            soft,
            MAX_CONNECTIONS,
            needed,
        )
    return int(soft)


def bounded_server(config: Any) -> Any:
    """A ``uvicorn.Server`` for ``config`` whose process ends within STOP_DEADLINE_S of the
    first SIGTERM or SIGINT, whatever still runs (a stuck shutdown is a defect: its stacks are
    dumped so that it can be found)."""
    import uvicorn

    class BoundedServer(uvicorn.Server):
        _loop: asyncio.AbstractEventLoop | None = None

        async def serve(self, sockets: Any = None) -> None:
            self._loop = asyncio.get_running_loop()
            await super().serve(sockets)

        def handle_exit(self, sig: int, frame: Any) -> None:
            if not self.should_exit:
                log.info("stopping; the process ends within %d s", STOP_DEADLINE_S)
                # A C thread of its own: it fires even if the event loop or the main thread
                # never comes back.
                faulthandler.dump_traceback_later(STOP_DEADLINE_S, exit=True)
                if self._loop is not None:
                    self._loop.call_soon_threadsafe(
                        self._loop.call_later, STOP_DEADLINE_S - 1, _log_running_tasks
                    )
            super().handle_exit(sig, frame)

    return BoundedServer(config)


def _log_running_tasks() -> None:
    """What a stop that is about to be cut short still waits for (its asyncio tasks)."""
    tasks = asyncio.all_tasks()
    log.error("the stop is late: %d task(s) still running", len(tasks))
    for task in tasks:
        frames = task.get_stack(limit=8)
        where = " <- ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in reversed(frames))
        log.error("still running: %s at %s", task.get_name(), where or "(not started)")


def guarded_protocol(request_timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with a deadline for each whole request and a cap on heads.

    uvicorn has no timeout while a request arrives: a client that opens a connection and sends
    one header byte a minute (slow-loris), or a body that never ends, holds the connection for
    ever. Here a timer starts when a connection opens (and again after each response) and
    closes the connection unless the request line, headers and body all arrived within
    ``request_timeout_s``; the request head may hold at most MAX_HEAD_BYTES.
    """
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    # The server's open connections per source address (this class serves one server).
    per_address: Counter[str] = Counter()

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None
        _head_bytes = 0
        _in_head = True
        _source: str | None = None

        def _arm(self) -> None:
            self._disarm()
            self._head_bytes = 0
            self._in_head = True
            self._deadline = self.loop.call_later(request_timeout_s, self._too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            log.info("closing a connection whose request took over %g s", request_timeout_s)
            # abort, not close: a slow client gets no graceful TLS goodbye to wait for.
            self.transport.abort()

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]
            # After uvicorn's setup (its flow control keeps the transport itself).
            self.transport = _OneWritePerTurn(self.transport, self.loop)  # type: ignore[assignment]
            if self.client is not None:
                self._source = self.client[0]
                per_address[self._source] += 1
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._source is not None:
                per_address[self._source] -= 1
                if per_address[self._source] <= 0:
                    del per_address[self._source]
                self._source = None
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._in_head:
                # Counted before feeding: a head still incomplete after MAX_HEAD_BYTES is too
                # large (memory stays bounded by the cap plus one read).
                if self._head_bytes > MAX_HEAD_BYTES:
                    self._refuse_head()
                    return
                self._head_bytes += len(data)
            super().data_received(data)

        def _refuse_head(self) -> None:
            """400 in the documented error shape of the path's API (uvicorn's own answer is
            text/plain, which schemathesis found on a request with a 64 KiB URL)."""
            detail = f"request head over {MAX_HEAD_BYTES} bytes"
            if self.url.startswith(b"/taxii2"):  # TAXII answers TAXII error messages
                media = b"application/taxii+json;version=2.1"
                shape: dict[str, object] = {
                    "title": "Bad Request",
                    "description": detail,
                    "http_status": "400",
                }
            else:
                media = b"application/json"
                shape = {"error": {"code": "too_large", "detail": detail}}
            body = json.dumps(shape).encode()
            log.info("refused a request head over %d bytes", MAX_HEAD_BYTES)
            self.transport.write(
                b"HTTP/1.1 400 Bad Request\r\ncontent-type: "
                + media
                + b"\r\ncontent-length: "
                + str(len(body)).encode()
                + b"\r\nconnection: close\r\n\r\n"
                + body
            )
            self.transport.close()

        def on_headers_complete(self) -> None:
            self._in_head = False
            super().on_headers_complete()
            # uvicorn's own cap (limit_concurrency) answers in text/plain; ours is counted
            # here, where the connections are known, and answered by the application
            # (SurfaceLimits) in the documented error shape.
            if len(self.connections) > MAX_CONNECTIONS or len(self.tasks) > MAX_CONNECTIONS:
                self.scope["state"][OVERLOADED] = (
                    f"{len(self.connections)} connections open; at most {MAX_CONNECTIONS}"
                )
            elif self._source is not None and per_address[self._source] > (
                MAX_CONNECTIONS_PER_ADDRESS
            ):
                self.scope["state"][OVERLOADED] = (
                    f"{per_address[self._source]} connections open from {self._source}; "
                    f"at most {MAX_CONNECTIONS_PER_ADDRESS} from one address"
                )

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def on_response_complete(self) -> None:
            # The whole response is written: it leaves now, not at the end of the turn. Tasks
            # that became ready meanwhile would run first: on the sender, the delivery worker's
            # next look at the outbox (a read transaction) delayed the answer to a
            # ``send ... wait=delivered`` whose receipt had just come in.
            writer: object = self.transport  # typed as uvicorn's; ours since connection_made
            if isinstance(writer, _OneWritePerTurn):
                writer.flush()
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request on this connection gets its own deadline

        def shutdown(self) -> None:
            # An idle keep-alive connection is dropped at once when the server stops. A TLS
            # close() would first wait for the client's close_notify, and a peer's pooled
            # client only reads its socket on its next request: the server waited seconds
            # (up to a heartbeat interval) for it. Between requests nothing can be cut short.
            if self.cycle is None or self.cycle.response_complete:
                self._disarm()
                self.transport.abort()
            else:
                super().shutdown()

    return GuardedHttpToolsProtocol


__all__ = [
    "MAX_CONNECTIONS",
    "MAX_CONNECTIONS_PER_ADDRESS",
    "MAX_HEAD_BYTES",
    "MAX_TRACKED_SOURCES",
    "OVERLOADED",
    "RESERVED_FILES",
    "SHUTDOWN_GRACE_S",
    "STOP_DEADLINE_S",
    "RateLimiter",
    "bounded_server",
    "guarded_protocol",
    "raise_open_file_limit",
]
