"""Flood benchmark: does one peer sending at full speed slow another peer's urgent messages?

    .venv/bin/python benchmarks/flood.py [--messages 100]

Three real nodes on loopback. washington sends IMMEDIATE 1 KiB messages to moscow one at a time
(send -> DELIVERED receipt), first on a quiet link, then while beijing floods moscow with
batches of 250 messages as fast as its operator API takes them. Target (issue 9): the p99 under
the flood within 100 ms of the quiet p99. (FLASH needs a second person's release; IMMEDIATE
takes the same path through the link.)
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _stats import percentile

from hotline.node.home import NodeHome
from link import _free_port, _start

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".bench" / "flood"
TEXT = "x" * 1024


def _setup() -> dict[str, NodeHome]:
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    homes = {
        name: NodeHome.init(
            WORK / name, name=name, listen=f"127.0.0.1:{_free_port()}", display_names={"en": name}
        )
        for name in ("washington", "moscow", "beijing")
    }
    now = datetime.now(UTC)
    for name, home in homes.items():
        for other_name, other in homes.items():
            if other_name != name:
                card = other.card(now)
                home.add_peer(card, card.fingerprint, now)
    return homes


def _client(home: NodeHome) -> httpx.Client:
    return httpx.Client(
        base_url=home.config.endpoint,
        verify=home.local_verify(),
        headers={"authorization": f"Bearer {home.api_token}"},
        timeout=120,
    )


def _latencies(home: NodeHome, count: int) -> list[float]:
    out = []
    with _client(home) as api:
        for _ in range(count):
            started = time.perf_counter()
            reply = api.post(
                "/api/v1/messages",
                params={"wait": "delivered", "timeout": 60},
                json={"to": "moscow", "priority": "immediate", "text": TEXT},
            ).json()
            if reply["state"] != "delivered":
                raise RuntimeError(f"not delivered: {reply}")
            out.append(time.perf_counter() - started)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100)
    args = parser.parse_args()
    homes = _setup()
    processes = [_start(home) for home in homes.values()]
    stop = threading.Event()
    flooded = [0]

    def flood() -> None:
        with _client(homes["beijing"]) as api:
            while not stop.is_set():
                chunk = [{"to": "moscow", "priority": "routine", "text": TEXT}] * 250
                flooded[0] += len(api.post("/api/v1/messages/batch", json=chunk).json()["ids"])

    try:
        _latencies(homes["washington"], 20)  # warm up
        quiet = _latencies(homes["washington"], args.messages)
        flooder = threading.Thread(target=flood, daemon=True)
        flooder.start()
        time.sleep(2)
        loaded = _latencies(homes["washington"], args.messages)
        stop.set()
        flooder.join(timeout=120)
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
    q99, l99 = percentile(quiet, 99) * 1000, percentile(loaded, 99) * 1000
    print(
        f"washington -> moscow, quiet: p50 {percentile(quiet, 50) * 1000:.1f} ms, p99 {q99:.1f} ms"
    )
    print(
        f"washington -> moscow, while beijing floods moscow ({flooded[0]} messages queued): "
        f"p50 {percentile(loaded, 50) * 1000:.1f} ms, p99 {l99:.1f} ms"
    )
    print(f"p99 difference: {l99 - q99:+.1f} ms (target: at most +100 ms)")


if __name__ == "__main__":
    main()
