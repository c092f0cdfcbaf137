"""Store benchmark: the link's burst throughput with both nodes on SQLite, then on PostgreSQL.

    .venv/bin/python benchmarks/store.py [--burst 2000] [--messages 100] [--store both]

Two real node processes on loopback (as benchmarks/link.py), first with their stores in SQLite
files, then each in its own database of a PostgreSQL 15 cluster that scripts/setup-postgres.sh
installs and starts (fsync on; the store sets synchronous_commit=on). For each engine: the
sequential send -> DELIVERED latency, and a burst of N 1 KiB messages submitted in batches of
250 through the API, timed until the last DELIVERED receipt. Target (issue 8): PostgreSQL at least
half of SQLite's burst throughput.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _stats import percentile

from hotline.node.home import NodeHome
from hotline.store.db import normalize_url
from link import TEXT, _free_port, _start

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".bench" / "store"


def _postgres_server() -> str:
    """The durable cluster of scripts/setup-postgres.sh (installed and started if needed)."""
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "setup-postgres.sh")],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip().splitlines()[-1]


def _pg_database_maker(server: str) -> tuple[Callable[[], str], Callable[[], None]]:
    admin = create_engine(normalize_url(server), isolation_level="AUTOCOMMIT")
    made: list[str] = []

    def make() -> str:
        name = f"hotline_bench_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        made.append(name)
        return admin.url.set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with admin.connect() as conn:
            for name in made:
                conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()

    return make, drop


def measure(engine: str, messages: int, burst: int) -> dict[str, Any]:
    work = WORK / engine
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    drop: Callable[[], None] = lambda: None  # noqa: E731
    new_url: Callable[[], str] = lambda: ""  # noqa: E731 (SQLite: store.sqlite in each dir)
    if engine == "postgresql":
        new_url, drop = _pg_database_maker(_postgres_server())
    homes = {
        name: NodeHome.init(
            work / name,
            name=name,
            listen=f"127.0.0.1:{_free_port()}",
            display_names={"en": name},
            store_url=new_url(),
        )
        for name in ("washington", "moscow")
    }
    now = datetime.now(UTC)
    for name, home in homes.items():
        other = homes["moscow" if name == "washington" else "washington"]
        card = other.card(now)
        home.add_peer(card, card.fingerprint, now)
    processes = [_start(h) for h in homes.values()]
    w = homes["washington"]
    try:
        with httpx.Client(
            base_url=w.config.endpoint,
            headers={"authorization": f"Bearer {w.api_token}"},
            timeout=60,
        ) as api:

            def send_and_wait() -> float:
                started = time.perf_counter()
                reply = api.post(
                    "/api/v1/messages", json={"to": "moscow", "priority": "immediate", "text": TEXT}
                )
                message_id = reply.json()["id"]
                view = api.get(
                    f"/api/v1/messages/{message_id}", params={"wait": "delivered", "timeout": 30}
                ).json()
                if view["state"] not in ("delivered", "acknowledged", "answered"):
                    raise RuntimeError(f"not delivered: {view['state']}")
                return time.perf_counter() - started

            for _ in range(20):
                send_and_wait()
            latencies = [send_and_wait() for _ in range(messages)]

            started = time.perf_counter()
            ids: list[str] = []
            for first in range(0, burst, 250):
                chunk = [
                    {"to": "moscow", "priority": "routine", "text": TEXT}
                    for _ in range(min(250, burst - first))
                ]
                ids += api.post("/api/v1/messages/batch", json=chunk).json()["ids"]
            submitted = time.perf_counter() - started
            for message_id in reversed(ids):
                view = api.get(
                    f"/api/v1/messages/{message_id}", params={"wait": "delivered", "timeout": 60}
                ).json()
                if view.get("state") not in ("delivered", "acknowledged", "answered"):
                    raise RuntimeError(f"burst message not delivered: {view}")
            total = time.perf_counter() - started
    finally:
        for p in processes:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=10)
        for h in homes.values():
            h.close()
        drop()
    return {
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "burst": len(ids),
        "burst_submit_s": submitted,
        "burst_total_s": total,
        "burst_per_s": len(ids) / total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--store", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    engines = ["sqlite", "postgresql"] if args.store == "both" else [args.store]
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    results: dict[str, dict[str, Any]] = {}
    for engine in engines:
        print(f"{engine}: {args.messages} sequential 1 KiB messages, burst of {args.burst} ...")
        r = results[engine] = measure(engine, args.messages, args.burst)
        print(
            f"  send -> DELIVERED: p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms; "
            f"burst of {r['burst']} receipted in {r['burst_total_s']:.2f} s = "
            f"{r['burst_per_s']:.0f} messages/s (accepted in {r['burst_submit_s']:.2f} s)"
        )
    if len(results) == 2:
        ratio = results["postgresql"]["burst_per_s"] / results["sqlite"]["burst_per_s"]
        print(f"\nPostgreSQL burst / SQLite burst = {ratio:.2f}  (target >= 0.5)")
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")


if __name__ == "__main__":
    main()
