"""Transcript benchmark: durable appends/s, proof times at 10^4..10^6 entries, in-memory appends.

Standalone (not part of ``make test``):

    .venv/bin/python benchmarks/transcript.py            # up to 10^6 entries, ~1-2 minutes
    .venv/bin/python benchmarks/transcript.py --max 100000

It creates a fresh SQLite store (WAL, synchronous=FULL, as the node runs it) under ``.bench/``,
appends entries in batches, each batch one committed transaction, and at 10^4, 10^5 and 10^6
entries times inclusion and consistency proofs for random positions against the current size.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import time
from pathlib import Path

from sqlalchemy import Engine

import hotline.transcript as transcript
from hotline.core import merkle
from hotline.store.db import create_store_engine, migrate, sqlite_url

ENTRY_BYTES = 1_200  # about a sealed notification envelope


def fresh_store(directory: Path) -> Engine:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    engine = create_store_engine(sqlite_url(directory / "store.sqlite"))
    migrate(engine)
    return engine


def entries(start: int, count: int, payload: bytes) -> list[transcript.NewEntry]:
    return [
        transcript.NewEntry(data=payload + i.to_bytes(8, "big"), kind="message", ref=f"env-{i}")
        for i in range(start, start + count)
    ]


def ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1000, p99 * 1000


def time_proofs(engine: Engine, size: int, samples: int, rng: random.Random) -> list[str]:
    lines = []
    root = None
    incl_q: list[float] = []
    cons_q: list[float] = []
    incl_tx: list[float] = []
    verify: list[float] = []
    with engine.connect() as conn:  # one read transaction: the cost of the queries themselves
        root = transcript.root(conn, size)
        for _ in range(samples):
            index = rng.randrange(size)
            t0 = time.perf_counter()
            proof = transcript.inclusion_proof(conn, index, size)
            incl_q.append(time.perf_counter() - t0)
            leaf = transcript.leaf(conn, index).leaf_hash
            t0 = time.perf_counter()
            merkle.verify_inclusion(leaf_hash=leaf, index=index, size=size, proof=proof, root=root)
            verify.append(time.perf_counter() - t0)
            old = rng.randrange(1, size)
            t0 = time.perf_counter()
            transcript.consistency_proof(conn, old, size)
            cons_q.append(time.perf_counter() - t0)
    for _ in range(samples):  # each proof in its own transaction (BEGIN IMMEDIATE .. ROLLBACK)
        index = rng.randrange(size)
        t0 = time.perf_counter()
        with engine.connect() as conn:
            transcript.inclusion_proof(conn, index, size)
        incl_tx.append(time.perf_counter() - t0)
    for name, s in (
        ("inclusion proof (in an open transaction)", incl_q),
        ("inclusion proof (own transaction)", incl_tx),
        ("consistency proof (in an open transaction)", cons_q),
        ("verify inclusion (pure)", verify),
    ):
        p50, p99 = ms(s)
        lines.append(f"| {size:,} | {name} | {p50:.3f} | {p99:.3f} |")
    return lines


def durable(args: argparse.Namespace) -> None:
    rng = random.Random(9162)
    payload = rng.randbytes(ENTRY_BYTES - 8)
    engine = fresh_store(Path(args.dir) / "grow")
    checkpoints = [n for n in (10_000, 100_000, 1_000_000) if n <= args.max]
    proof_lines: list[str] = []
    n = 0
    spent = 0.0
    for target in checkpoints:
        while n < target:
            batch = entries(n, min(args.batch, target - n), payload)
            t0 = time.perf_counter()
            with engine.begin() as conn:
                transcript.append(conn, batch)
            spent += time.perf_counter() - t0
            n += len(batch)
        print(
            f"durable append, batches of {args.batch}: {n:,} entries, "
            f"{n / spent:,.0f} appends/s cumulative"
        )
        proof_lines += time_proofs(engine, n, args.samples, rng)
    size_mb = (Path(args.dir) / "grow" / "store.sqlite").stat().st_size / 1e6
    engine.dispose()
    # Opening the full log: a new engine (as a restarted node or the CLI), its size and root.
    t0 = time.perf_counter()
    reopened = create_store_engine(sqlite_url(Path(args.dir) / "grow" / "store.sqlite"))
    with reopened.connect() as conn:
        opened_size, _ = transcript.size(conn), transcript.root(conn)
    opened_ms = (time.perf_counter() - t0) * 1000
    reopened.dispose()
    print(f"open a log of {opened_size:,} entries (new engine, size, root): {opened_ms:.1f} ms")
    print(f"store file at {n:,} entries: {size_mb:.0f} MB (before WAL checkpoint)")
    print("| entries | operation | p50 ms | p99 ms |\n|---|---|---|---|")
    print("\n".join(proof_lines))

    # Appends/s by batch size on a fresh store, 50,000 entries each.
    for batch_size in (1, 10, 100, 1_000, 10_000):
        engine = fresh_store(Path(args.dir) / f"batch{batch_size}")
        total = 2_000 if batch_size == 1 else 50_000
        spent = 0.0
        for start in range(0, total, batch_size):
            batch = entries(start, batch_size, payload)
            t0 = time.perf_counter()
            with engine.begin() as conn:
                transcript.append(conn, batch)
            spent += time.perf_counter() - t0
        engine.dispose()
        print(f"durable append, batch {batch_size:>6}: {total / spent:>9,.0f} appends/s")


def in_memory(args: argparse.Namespace) -> None:
    rng = random.Random(1)
    payload = rng.randbytes(ENTRY_BYTES - 8)
    size, frontier = 0, []
    t0 = time.perf_counter()
    while size < args.max:
        count = min(args.batch, args.max - size)
        hashes = [
            merkle.leaf_hash(payload + i.to_bytes(8, "big")) for i in range(size, size + count)
        ]
        grown = merkle.append_leaves(size, frontier, hashes)
        size, frontier = grown.size, grown.frontier
    spent = time.perf_counter() - t0
    print(
        f"in-memory append (leaf hash + subtree hashes, no storage): {size / spent:,.0f} appends/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=".bench/transcript")
    parser.add_argument("--max", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--samples", type=int, default=2_000)
    args = parser.parse_args()
    in_memory(args)
    durable(args)


if __name__ == "__main__":
    main()
