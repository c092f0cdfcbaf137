"""A seeded fault-injecting HTTP/1.1 proxy to put between hotline nodes.

A node's card names this proxy as the node's endpoint, so every request a peer makes to it (and
every answer) crosses the proxy, which decides each exchange's fate from a random generator
seeded by the storm's seed and the proxy's name: the n-th request through a proxy meets the same
fault in every run with that seed (timing still varies, so a replay is close, not identical).

Faults, each a probability per request:

- ``drop``: the request never reaches the node, or the node's answer never comes back (half
  each); the client's connection is reset. The second kind is the one that matters: the node
  committed the batch, the sender does not know, and must retry without a duplicate delivery.
- ``duplicate``: the node receives the request twice (the copy's answer is thrown away).
- ``reorder``: a copy of the request is held back and delivered later, after newer requests.
- ``delay``: the exchange waits up to ``max_delay_s`` before it is forwarded.
- ``truncate``: only part of the request reaches the node, or only part of the answer comes back.
- ``corrupt``: one to four bytes of the request's body, or of the answer's body, are flipped.
- ``hang``: the proxy reads the request and then says nothing for ``hang_s`` (longer than the
  node's read timeout), then closes.

It parses just enough HTTP/1.1 (head, Content-Length or chunked body) to forward whole messages;
each request goes to the node on a fresh connection, so duplicated and held-back copies are
independent of the client's connection. Runs its own event loop in a daemon thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import re
import socket
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

#: Longest time the proxy waits for the node's answer before it gives up on an exchange.
UPSTREAM_TIMEOUT_S = 60.0
#: Longest head of an HTTP message the proxy accepts (the nodes' heads are a few hundred bytes).
MAX_HEAD_BYTES = 64 * 1024

_DESTRUCTIVE = ("drop", "truncate", "corrupt", "hang")


@dataclass(frozen=True, slots=True)
class Faults:
    """Probabilities per request (0..1) of each fault; ``drop``, ``truncate``, ``corrupt`` and
    ``hang`` exclude each other, ``duplicate``, ``reorder`` and ``delay`` combine with them."""

    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    delay: float = 0.0
    truncate: float = 0.0
    corrupt: float = 0.0
    hang: float = 0.0
    #: Only exchanges whose request path starts with one of these meet faults (empty: all).
    paths: tuple[str, ...] = ()
    #: Where the destructive faults strike: "request", "answer" or "both" (half each).
    side: str = "both"
    max_delay_s: float = 0.5
    #: How long a reordered copy is held back, at most.
    max_hold_s: float = 2.0
    hang_s: float = 20.0

    def __post_init__(self) -> None:
        if sum(getattr(self, k) for k in _DESTRUCTIVE) > 1.0:
            raise ValueError("drop + truncate + corrupt + hang must not exceed 1")

    def enabled(self) -> set[str]:
        """The names of the faults with a non-zero probability."""
        return {
            f.name
            for f in dataclasses.fields(self)
            if f.name in (*_DESTRUCTIVE, "duplicate", "reorder", "delay")
            and getattr(self, f.name) > 0
        }


CLEAN = Faults()


@dataclass(slots=True)
class _Fate:
    kind: str | None = None  # one of _DESTRUCTIVE, or None
    on_answer: bool = False  # the destructive fault hits the answer rather than the request
    duplicate: bool = False
    reorder_after_s: float | None = None
    delay_s: float = 0.0


class _Closed(Exception):
    """The exchange ends with the client's connection closed."""


async def _read_message(reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    """One HTTP/1.1 message as (head, raw body); None on a clean end of stream."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return None
        raise
    if len(head) > MAX_HEAD_BYTES:
        raise ValueError("HTTP head too long")
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.strip().lower()] = value.strip().lower()
    if b"chunked" in headers.get(b"transfer-encoding", b""):
        parts = []
        while True:
            line = await reader.readuntil(b"\r\n")
            parts.append(line)
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, up to the empty line
                    trailer = await reader.readuntil(b"\r\n")
                    parts.append(trailer)
                    if trailer == b"\r\n":
                        break
                return head, b"".join(parts)
            parts.append(await reader.readexactly(size + 2))
    length = int(headers.get(b"content-length", b"0"))
    return head, await reader.readexactly(length) if length else b""


def _wants_close(head: bytes) -> bool:
    return b"\r\nconnection: close" in head.lower()


class FaultProxy:
    """Forwards HTTP exchanges from ``listen`` to ``upstream``, injecting seeded faults."""

    def __init__(
        self,
        name: str,
        upstream: tuple[str, int],
        *,
        seed: int,
        faults: Faults = CLEAN,
        listen_host: str = "127.0.0.1",
    ) -> None:
        self.name = name
        self.upstream = upstream
        self.faults = faults
        #: An attacker on the path: given the request path and the answer's body, the body to
        #: send on instead (tests set it; faults apply first).
        self.rewrite_answer: Callable[[str, bytes], bytes] | None = None
        self.counts: Counter[str] = Counter()
        self._rng = random.Random(f"{seed}/{name}")
        self._listen_host = listen_host
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{self._listen_host}:{self.port}"

    def start(self) -> FaultProxy:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._listen_host, 0))
        self.port = sock.getsockname()[1]
        loop = self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, daemon=True, name=self.name)
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, sock=sock), loop
        ).result(timeout=10)
        return self

    def set_faults(self, faults: Faults) -> None:
        """From now on (a plain attribute: read once per request by the proxy's thread)."""
        self.faults = faults

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            # Every connection handler too (a hung one waits for ever), so that each closes its
            # streams while the loop still runs: a stream left to the garbage collector after
            # the loop is closed raises in its finalizer, inside whatever test runs then.
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if thread.is_alive():
            asyncio.run_coroutine_threadsafe(close(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
        if not thread.is_alive() and not loop.is_closed():
            loop.close()

    # -- the proxy's thread ------------------------------------------------------------------

    def _decide(self, path: str = "/") -> _Fate:
        f, rng = self.faults, self._rng
        fate = _Fate()
        # Every draw happens whatever the outcome, so that the n-th request's fate depends on
        # the seed and n only, not on which faults happened to be enabled before it.
        pick, side, dup, reorder, hold, delay, delay_s = (rng.random() for _ in range(7))
        if f.paths and not path.startswith(f.paths):
            return fate
        edge = 0.0
        for kind in _DESTRUCTIVE:
            edge += getattr(f, kind)
            if pick < edge:
                fate.kind = kind
                break
        fate.on_answer = f.side == "answer" or (f.side == "both" and side < 0.5)
        fate.duplicate = dup < f.duplicate
        if reorder < f.reorder:
            fate.reorder_after_s = 0.1 + hold * f.max_hold_s
        if delay < f.delay:
            fate.delay_s = delay_s * f.max_delay_s
        for name, happened in (
            ("duplicate", fate.duplicate),
            ("reorder", fate.reorder_after_s is not None),
            ("delay", fate.delay_s > 0),
        ):
            self.counts[name] += happened
        if fate.kind is not None:
            self.counts[f"{fate.kind}_{'answer' if fate.on_answer else 'request'}"] += 1
        return fate

    def _corrupt(self, body: bytes) -> bytes:
        if not body:
            return body
        data = bytearray(body)
        for _ in range(self._rng.randint(1, 4)):
            data[self._rng.randrange(len(data))] ^= self._rng.randint(1, 255)
        return bytes(data)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                message = await _read_message(reader)
                if message is None:
                    break
                if not await self._exchange(*message, writer):
                    break
        except _Closed:
            writer.transport.abort()  # a reset, as a broken path looks to the client
            return
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            if not writer.transport.is_closing():
                with contextlib.suppress(OSError):
                    writer.close()

    async def _upstream(self, head: bytes, body: bytes, *, whole: bool = True) -> bytes:
        """Send a request to the node on a fresh connection; its whole answer (raw)."""
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*self.upstream), 5.0)
        try:
            writer.write(head + body)
            await writer.drain()
            if not whole:
                return b""
            answer = await asyncio.wait_for(_read_message(reader), UPSTREAM_TIMEOUT_S)
            if answer is None:
                raise ConnectionError("the node closed without answering")
            return answer[0] + answer[1]
        finally:
            if whole:
                writer.close()
            else:
                writer.transport.abort()  # the rest of the request never comes

    def _copy_later(self, head: bytes, body: bytes, after_s: float) -> None:
        async def send() -> None:
            await asyncio.sleep(after_s)
            with contextlib.suppress(Exception):
                await self._upstream(head, body)

        task = asyncio.get_running_loop().create_task(send())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _exchange(self, head: bytes, body: bytes, writer: asyncio.StreamWriter) -> bool:
        """Forward one request and its answer, meeting this request's fate. False: close."""
        path = head.split(b" ", 2)[1].decode("latin-1") if b" " in head else "/"
        fate = self._decide(path)
        if fate.delay_s:
            await asyncio.sleep(fate.delay_s)
        if fate.kind == "hang":
            await asyncio.sleep(self.faults.hang_s)
            raise _Closed
        if not fate.on_answer:
            if fate.kind == "drop":
                raise _Closed
            if fate.kind == "truncate":
                cut = self._rng.randrange(len(head) // 2, len(head) + len(body))
                with contextlib.suppress(Exception):
                    await self._upstream((head + body)[:cut], b"", whole=False)
                raise _Closed
            if fate.kind == "corrupt":
                body = self._corrupt(body)
        if fate.duplicate:
            self._copy_later(head, body, 0.0)
        if fate.reorder_after_s is not None:
            self._copy_later(head, body, fate.reorder_after_s)
        try:
            answer = await self._upstream(head, body)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
            raise _Closed from e  # the node is down: the client sees its connection reset
        if fate.on_answer:
            if fate.kind == "drop":
                raise _Closed
            if fate.kind == "truncate":
                writer.write(answer[: self._rng.randrange(len(answer))])
                await writer.drain()
                raise _Closed
            if fate.kind == "corrupt":
                split = answer.index(b"\r\n\r\n") + 4
                answer = answer[:split] + self._corrupt(answer[split:])
        if self.rewrite_answer is not None:
            split = answer.index(b"\r\n\r\n") + 4
            answer_head, body = answer[:split], answer[split:]
            rewritten = self.rewrite_answer(path, body)
            if rewritten != body:
                self.counts["rewritten"] += 1
                answer_head = re.sub(
                    rb"(?i)\r\ncontent-length: *\d+",
                    b"\r\ncontent-length: %d" % len(rewritten),
                    answer_head,
                )
            answer = answer_head + rewritten
        writer.write(answer)
        await writer.drain()
        return not (_wants_close(head) or _wants_close(answer))
