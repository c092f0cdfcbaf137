"""Store benchmark: the link's burst throughput with both nodes on SQLite, then on PostgreSQL.

    .venv/bin/python benchmarks/store.py [--burst 2000] [--messages 100] [--store both]

Two real node processes on loopback (as benchmarks/link.py), first with their stores in SQLite
files, then each in its own database of a PostgreSQL 15 cluster that scripts/setup-postgres.sh
installs and starts (fsync on; the store sets synchronous_commit=on). For each engine: the
sequential send -> DELIVERED latency, and a burst of N 1 KiB messages submitted in batches of
250 through the API, timed until the last DELIVERED receipt, with the CPU time per message of
each node and of the PostgreSQL server during the burst (it hardly moves with the machine's
load). Target (issue 8): PostgreSQL at least half of SQLite's burst throughput.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hotline.store.db import normalize_url
from link import cpu_seconds, linked_homes, measure_nodes

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".bench" / "store"


def _pg_data() -> Path:
    """The data folder of scripts/setup-postgres.sh's cluster (as that script names it)."""
    return Path(os.environ.get("HOTLINE_PG_DIR") or ROOT / ".pg" / "durable") / "data"


def _server_cpu() -> float:
    """CPU seconds so far of the cluster's server processes (the postmaster's children: the
    nodes' connections stay open in their pools through a run, so their time is counted)."""
    postmaster = int((_pg_data() / "postmaster.pid").read_text().split()[0])
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent == postmaster:
            total += cpu_seconds(int(proc.name))
    return total


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
    """benchmarks/link.py's measurement, with both stores on ``engine``."""
    if engine == "sqlite":
        return measure_nodes(linked_homes(WORK / engine), messages, burst)
    new_database, drop = _pg_database_maker(_postgres_server())
    try:
        return measure_nodes(
            linked_homes(WORK / engine, new_database), messages, burst, others=_server_cpu
        )
    finally:
        drop()


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
        sender, receiver, server = r["cpu_burst_ms"]
        print(
            f"  burst CPU per message: sender {sender:.2f} ms, receiver {receiver:.2f} ms"
            + (f", PostgreSQL server {server:.2f} ms" if engine == "postgresql" else "")
            + f"; total {sender + receiver + server:.2f} ms"
        )
    if len(results) == 2:
        ratio = results["postgresql"]["burst_per_s"] / results["sqlite"]["burst_per_s"]
        print(f"\nPostgreSQL burst / SQLite burst = {ratio:.2f}  (target >= 0.5)")
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")


if __name__ == "__main__":
    main()
