"""Transports: delivery latency over each transport, and failover from direct to relay.

    .venv/bin/python benchmarks/transports.py [--messages N] [--stream-s S]

Three real processes on 127.0.0.1: washington, moscow (TLS 1.3, pinned certificates) and the
relay geneva. washington reaches moscow directly through a TCP forwarder in this process (the
"cable", which the benchmark can cut) and, after that, through geneva.

1. Latency, send -> DELIVERED receipt (operator API, long-poll), sequential, over the direct path
   and over the relay (direct path cut).
2. Failover: one message every 100 ms for ``--stream-s`` seconds; a third of the way in the
   cable is cut, either **refused** (nothing listens: connections fail at once) or **silent**
   (connections open but every byte is swallowed: a cable cut under an open TCP connection).
   Printed: time from the first failed attempt on the direct path to the failover event, from
   the cut to the first delivery through the relay, and the worst and p99 send -> DELIVERED time
   of the messages sent around the cut (targets: failover under 5 s from the first failed
   attempt; no message delayed more than 10 s).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from _stats import percentile
from sqlalchemy import select

from hotline.node.home import CONFIG_FILE, NodeHome
from hotline.store.schema import link_events, message_events
from link import _free_port, _start

WORK = Path(__file__).resolve().parent.parent / ".bench" / "transports"
TEXT = "x" * 1024
HEARTBEAT_S = 5.0


class Cable:
    """A TCP forwarder: up, cut so that connections are refused, or cut silently."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.mode = "up"
        self.sockets: list[socket.socket] = []
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = int(probe.getsockname()[1])
        probe.close()
        self.server: socketserver.ThreadingTCPServer | None = None

    def _serve(self) -> None:
        cable = self

        class Pipe(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                upstream = socket.create_connection(("127.0.0.1", cable.target))
                cable.sockets += [upstream, self.request]

                def pump(src: socket.socket, dst: socket.socket) -> None:
                    try:
                        while data := src.recv(65536):
                            if cable.mode == "up":
                                dst.sendall(data)  # silent: bytes are swallowed
                    except OSError:
                        pass
                    finally:
                        with contextlib.suppress(OSError):
                            dst.close()

                threading.Thread(target=pump, args=(upstream, self.request), daemon=True).start()
                pump(self.request, upstream)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Pipe)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def up(self) -> None:
        self.mode = "up"
        if self.server is None:
            self._serve()

    def cut(self, how: str) -> None:
        self.mode = how
        if how == "refused":
            if self.server is not None:
                self.server.shutdown()
                self.server.server_close()
                self.server = None
            for s in self.sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
            self.sockets.clear()


def _setup() -> dict[str, NodeHome]:
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    homes = {
        name: NodeHome.init(
            WORK / name,
            name=name,
            listen=f"127.0.0.1:{_free_port()}",
            display_names={"en": name},
            role="relay" if name == "geneva" else "node",
        )
        for name in ("washington", "moscow", "geneva")
    }
    for name in ("washington", "moscow"):
        config = dataclasses.replace(
            homes[name].config, heartbeat_interval_s=HEARTBEAT_S, relays=["geneva"]
        )
        (homes[name].dir / CONFIG_FILE).write_text(config.to_toml())
        homes[name] = NodeHome(homes[name].dir)
    now = datetime.now(UTC)
    for name, home in homes.items():  # every pair: the nodes, and both registered at geneva
        for other_name, other in homes.items():
            if other_name != name:
                card = other.card(now)
                home.add_peer(card, card.fingerprint, now)
    return homes


def _reroute(homes: dict[str, NodeHome], cable: Cable) -> None:
    """washington learns moscow's card (signed by moscow) with the cable as its endpoint."""
    m = homes["moscow"]
    config = dataclasses.replace(m.config, endpoint=f"https://127.0.0.1:{cable.port}")
    (m.dir / CONFIG_FILE).write_text(config.to_toml())
    card = NodeHome(m.dir).card(datetime.now(UTC))
    homes["washington"].add_peer(card, card.fingerprint, datetime.now(UTC))


def _events(home: NodeHome, since_us: int) -> list[tuple[int, str, str | None]]:
    with home.store.read() as conn:
        return [
            (r.at_us, r.kind, r.transport)
            for r in conn.execute(
                select(link_events)
                .where(link_events.c.peer == "moscow", link_events.c.at_us >= since_us)
                .order_by(link_events.c.id)
            )
        ]


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def _latencies(api: httpx.Client, n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        message_id = api.post(
            "/api/v1/messages", json={"to": "moscow", "priority": "immediate", "text": TEXT}
        ).json()["id"]
        view = api.get(
            f"/api/v1/messages/{message_id}", params={"wait": "delivered", "timeout": 30}
        ).json()
        if view["state"] not in ("delivered", "acknowledged", "answered"):
            raise RuntimeError(f"not delivered: {view['state']}")
        out.append(time.perf_counter() - started)
    return out


def _failover(
    homes: dict[str, NodeHome], api: httpx.Client, cable: Cable, how: str, stream_s: float
) -> dict[str, float]:
    w = homes["washington"]
    cable.up()
    _wait_for(
        lambda: any(
            k == "fallback" or (k == "heartbeat_ok" and t and t.startswith("https"))
            for _, k, t in _events(w, int(time.time() * 1e6) - 2_000_000)
        ),
        3 * HEARTBEAT_S + 10,
        "the direct path to be in use",
    )
    time.sleep(1.0)
    ids: list[str] = []
    started = time.time()
    cut_at = 0.0
    while time.time() - started < stream_s:
        if not cut_at and time.time() - started >= stream_s / 3:
            cut_at = time.time()
            cable.cut(how)
        ids.append(
            api.post(
                "/api/v1/messages", json={"to": "moscow", "priority": "immediate", "text": TEXT}
            ).json()["id"]
        )
        time.sleep(0.1)
    for message_id in ids:
        view = api.get(
            f"/api/v1/messages/{message_id}", params={"wait": "delivered", "timeout": 60}
        ).json()
        if view["state"] not in ("delivered", "acknowledged", "answered"):
            raise RuntimeError(f"not delivered after the cut: {view['state']}")
    cut_us = int(cut_at * 1e6)
    events = _events(w, cut_us)
    first_failure = min(
        at for at, kind, t in events if kind.endswith("_failed") and t and t.startswith("https")
    )
    failover = min(at for at, kind, t in events if kind == "failover")
    delays = []
    first_relayed = None
    with w.store.read() as conn:
        for message_id in ids:
            rows = {
                r.state: r.at_us
                for r in conn.execute(
                    select(message_events.c.state, message_events.c.at_us).where(
                        message_events.c.message_id == message_id
                    )
                )
            }
            delays.append((rows["delivered"] - rows["queued"]) / 1e6)
            if rows["queued"] >= cut_us and rows["delivered"] >= failover:
                first_relayed = min(first_relayed or rows["delivered"], rows["delivered"])
    return {
        "messages": len(ids),
        "failover_after_first_failure_s": (failover - first_failure) / 1e6,
        "cut_to_failover_s": (failover - cut_us) / 1e6,
        "cut_to_first_relayed_delivery_s": ((first_relayed or failover) - cut_us) / 1e6,
        "worst_delay_s": max(delays),
        "p99_delay_s": percentile(delays, 99),
        "p50_delay_s": percentile(delays, 50),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--stream-s", type=float, default=15.0)
    args = parser.parse_args()
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    homes = _setup()
    processes: list[subprocess.Popen[bytes]] = []
    cable = Cable(homes["moscow"].config.listen_port)
    cable.up()
    _reroute(homes, cable)
    try:
        processes = [_start(homes[n]) for n in ("geneva", "moscow", "washington")]
        w = homes["washington"]
        with httpx.Client(
            base_url=w.config.endpoint,
            verify=w.local_verify(),
            headers={"authorization": f"Bearer {w.api_token}"},
            timeout=90,
        ) as api:
            _latencies(api, 20)  # warm up
            direct = _latencies(api, args.messages)
            print(
                f"direct (TLS 1.3, pinned): send -> DELIVERED p50 "
                f"{percentile(direct, 50) * 1000:.1f} ms, p99 {percentile(direct, 99) * 1000:.1f} "
                f"ms (n={len(direct)})"
            )
            cable.cut("refused")
            _latencies(api, 20)  # the failover itself is measured below
            relayed = _latencies(api, args.messages)
            print(
                f"relay (geneva):          send -> DELIVERED p50 "
                f"{percentile(relayed, 50) * 1000:.1f} ms, p99 "
                f"{percentile(relayed, 99) * 1000:.1f} ms (n={len(relayed)})"
            )
            for how in ("refused", "silent"):
                r = _failover(homes, api, cable, how, args.stream_s)
                print(
                    f"failover, cable cut {how}: {r['messages']} messages at 10/s; failover "
                    f"{r['failover_after_first_failure_s']:.2f} s after the first failed attempt "
                    f"({r['cut_to_failover_s']:.2f} s after the cut); first delivery through the "
                    f"relay {r['cut_to_first_relayed_delivery_s']:.2f} s after the cut; send -> "
                    f"DELIVERED worst {r['worst_delay_s']:.2f} s, p99 {r['p99_delay_s']:.2f} s, "
                    f"p50 {r['p50_delay_s']:.3f} s"
                )
        print("targets: failover < 5 s from the first failed attempt; no message delayed > 10 s")
    finally:
        cable.cut("refused")
        for p in processes:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=10)
        for h in homes.values():
            h.close()
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")


if __name__ == "__main__":
    sys.exit(main())
