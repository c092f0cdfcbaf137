"""The fault proxy itself: clean when told to be, faulty as told, and reproducible by seed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from faultproxy import FaultProxy, Faults


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    bodies: list[bytes]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.bodies.append(body)
        answer = b"echo:" + body
        self.send_response(200)
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[tuple[ThreadingHTTPServer, list[bytes]]]:
    bodies: list[bytes] = []
    handler = type("Echo", (_Echo,), {"bodies": bodies})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, bodies
    server.shutdown()
    server.server_close()


def _proxy(server: ThreadingHTTPServer, faults: Faults, seed: int = 7) -> FaultProxy:
    return FaultProxy("test", server.server_address[:2], seed=seed, faults=faults).start()


def test_a_clean_proxy_forwards_every_exchange_byte_for_byte_on_one_connection(upstream):
    server, bodies = upstream
    proxy = _proxy(server, Faults())
    try:
        with httpx.Client(base_url=proxy.url, timeout=5) as client:
            answers = [client.post("/x", content=bytes([i]) * 1000).content for i in range(20)]
    finally:
        proxy.stop()
    assert answers == [b"echo:" + bytes([i]) * 1000 for i in range(20)]
    assert bodies == [bytes([i]) * 1000 for i in range(20)]
    assert sum(proxy.counts.values()) == 0


def test_duplicated_requests_reach_the_upstream_twice_and_the_client_sees_one_answer(upstream):
    server, bodies = upstream
    proxy = _proxy(server, Faults(duplicate=1.0))
    try:
        with httpx.Client(base_url=proxy.url, timeout=5) as client:
            assert client.post("/x", content=b"once").content == b"echo:once"
        for _ in range(100):
            if len(bodies) == 2:
                break
            threading.Event().wait(0.02)
    finally:
        proxy.stop()
    assert bodies == [b"once", b"once"]


def test_dropped_exchanges_fail_at_the_client(upstream):
    server, _bodies = upstream
    proxy = _proxy(server, Faults(drop=1.0))
    try:
        with httpx.Client(base_url=proxy.url, timeout=5) as client:
            for _ in range(4):
                with pytest.raises(httpx.TransportError):
                    client.post("/x", content=b"lost")
    finally:
        proxy.stop()
    assert proxy.counts["drop_request"] + proxy.counts["drop_answer"] == 4


def test_corrupted_requests_and_answers_differ_from_what_was_sent(upstream):
    server, bodies = upstream
    proxy = _proxy(server, Faults(corrupt=1.0))
    try:
        with httpx.Client(base_url=proxy.url, timeout=5) as client:
            answers = [client.post("/x", content=b"a" * 64).content for _ in range(10)]
    finally:
        proxy.stop()
    requests, replies = proxy.counts["corrupt_request"], proxy.counts["corrupt_answer"]
    assert requests + replies == 10 and requests > 0 and replies > 0
    assert sum(1 for b in bodies if b != b"a" * 64) == requests
    assert sum(1 for a in answers if a != b"echo:" + b"a" * 64) == 10


def test_the_same_seed_gives_the_same_fates():
    faults = Faults(drop=0.2, duplicate=0.1, reorder=0.1, delay=0.3, corrupt=0.1)

    def fates(seed: int) -> list[tuple[object, ...]]:
        proxy = FaultProxy("to-moscow", ("127.0.0.1", 9), seed=seed, faults=faults)
        out = []
        for _ in range(200):
            f = proxy._decide()
            out.append((f.kind, f.on_answer, f.duplicate, f.reorder_after_s, f.delay_s))
        return out

    assert fates(42) == fates(42)
    assert fates(42) != fates(43)
