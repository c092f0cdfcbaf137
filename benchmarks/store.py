"""Store benchmark: the link's burst throughput with both nodes on SQLite, then on PostgreSQL.

    .venv/bin/python benchmarks/store.py [--burst 2000] [--messages 100] [--store both]
    .venv/bin/python benchmarks/store.py --in-process [--burst 1024] [--store both]

Two real node processes on loopback (as benchmarks/link.py), first with their stores in SQLite
files, then each in its own database of a PostgreSQL 15 cluster that scripts/setup-postgres.sh
installs and starts (fsync on; the store sets synchronous_commit=on). For each engine: the
sequential send -> DELIVERED latency, and a burst of N 1 KiB messages submitted in batches of
250 through the API, timed until the last DELIVERED receipt, with the CPU time per message of
each node and of the PostgreSQL server during the burst (it hardly moves with the machine's
load). Target (issue 8): PostgreSQL at least half of SQLite's burst throughput.

``--in-process``: the same path without processes or HTTP, one step after the other in this
process (queue in batches of 250, receive in batches of 32, take each batch's receipt back):
per message, the wall and CPU time of each step, the PostgreSQL server's CPU time, and the
times psycopg waited for the server (a round trip each, or part of one for a pipeline's results).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hotline.core.encoding import to_us
from hotline.link import inbox, outbox
from hotline.store.db import normalize_url
from hotline.store.messages import State, add_events, count_attempts, pending_outgoing
from link import TEXT, cpu_seconds, linked_homes, measure_nodes

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


_STEPS = ("queue", "receive", "receipt")


def measure_in_process(engine: str, messages: int) -> dict[str, list[float]]:
    """Per step (queue, receive, receipt): [wall, process CPU, server CPU, round trips] per
    message, in ms (round trips: a count)."""
    drop: Callable[[], None] | None = None
    if engine == "sqlite":
        homes = linked_homes(WORK / f"{engine}-in-process")
    else:
        new_database, drop = _pg_database_maker(_postgres_server())
        homes = linked_homes(WORK / f"{engine}-in-process", new_database)
    waits = _count_round_trips() if engine == "postgresql" else [0]
    w, m = homes["washington"], homes["moscow"]
    card = w.peer_card("moscow")
    peers_of = {"washington": w.peer_cards(), "moscow": m.peer_cards()}  # a node keeps them
    server = _server_cpu if engine == "postgresql" else (lambda: 0.0)

    def clock() -> tuple[float, float, float, float]:
        return (time.perf_counter(), time.process_time(), server(), float(waits[0]))

    def run(count: int) -> dict[str, list[float]]:
        totals = {step: [0.0, 0.0, 0.0, 0.0] for step in _STEPS}

        def add(step: str, a: tuple[float, ...], b: tuple[float, ...]) -> None:
            for i in range(4):
                totals[step][i] += b[i] - a[i]

        for first in range(0, count, 250):
            drafts = [
                outbox.Draft(
                    peer=card,
                    msg_type="free_text",
                    priority="routine",
                    body={"text": TEXT, "lang": "en"},
                    ttl=timedelta(hours=1),
                )
                for _ in range(min(250, count - first))
            ]
            a = clock()
            outbox.submit_messages(w.store, w.identity, drafts, now=datetime.now(UTC))
            add("queue", a, clock())
            while True:
                with w.store.read() as conn:
                    batch = pending_outgoing(conn, "moscow", 32)
                if not batch:
                    break
                now = datetime.now(UTC)
                a = clock()
                got = inbox.receive(
                    m.store,
                    m.identity,
                    peers_of["moscow"],
                    [o.envelope for o in batch],
                    now=now,
                    source="bench",
                )
                b = clock()

                def sent(conn: Any, batch: list[Any] = batch, at: int = to_us(now)) -> None:
                    count_attempts(conn, [o.id for o in batch])
                    add_events(conn, [(o.id, State.SENT, at, "") for o in batch])

                back = inbox.receive(
                    w.store,
                    w.identity,
                    peers_of["washington"],
                    got.receipts["washington"],
                    now=now,
                    source="bench",
                    also=sent,
                )
                add("receive", a, b)
                add("receipt", b, clock())
                if {o.status for o in got.outcomes} != {"accepted"} or [
                    o.status for o in back.outcomes
                ] != ["receipt"]:
                    raise RuntimeError(f"not delivered: {got.outcomes[:2]} {back.outcomes}")
        return totals

    try:
        run(64)  # warm: connections, prepared statements, caches
        totals = run(messages)
    finally:
        for home in homes.values():
            home.close()
        if drop is not None:
            drop()
    return {
        step: [v * 1000 / messages for v in values[:3]] + [values[3] / messages]
        for step, values in totals.items()
    }


def _count_round_trips() -> list[int]:
    """A counter of the times psycopg waits for the server from now on in this process: one per
    statement or commit, one or more per pipeline (its results may come in several reads)."""
    import psycopg

    counter = [0]
    original = psycopg.Connection.wait

    def wait(self: Any, gen: Any, *args: Any, **kwargs: Any) -> Any:
        counter[0] += 1
        return original(self, gen, *args, **kwargs)

    psycopg.Connection.wait = wait  # type: ignore[method-assign]
    return counter


def main_in_process(engines: list[str], messages: int) -> None:
    for engine in engines:
        r = measure_in_process(engine, messages)
        print(f"{engine}, in process, {messages} messages: per message")
        print("  step      wall ms  CPU ms  server CPU ms  waits for the server")
        for step in (*_STEPS, "total"):
            v = r[step] if step != "total" else [sum(r[s][i] for s in _STEPS) for i in range(4)]
            print(f"  {step:8s} {v[0]:8.3f} {v[1]:7.3f} {v[2]:14.3f} {v[3]:12.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--store", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--in-process", action="store_true", help="the path without HTTP")
    args = parser.parse_args()
    engines = ["sqlite", "postgresql"] if args.store == "both" else [args.store]
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    if args.in_process:
        main_in_process(engines, args.burst)
        print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
        return
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
