"""Deconfliction benchmark: hotline's engine against PostGIS, on the same seeded data, one run.

    .venv/bin/python benchmarks/deconfliction.py [--sizes 100000,1000000] [--queries 10000]
                                                 [--seed 7] [--no-postgis] [--workers 2]

Data (issue 5): volumes over lon 34-43, lat 31-38; 60% polygons of 5 to 12 vertices, 20% circles,
20% corridors; 1 to 50 km across; altitude bands within 0-15,000 m (150 to 3,000 m thick, whole
metres); time windows of 10 min to 12 h within 7 days (whole seconds). Queries are 10,000 more
volumes drawn the same way.

hotline: load from the node's store (SQLite) and index, in a fresh child process (time and peak
RSS); batch of all queries (``Engine.pairs``; both cores: a helper process forked by the first
batch after the index changed takes half of the queries; median of the three batches after that
first one, with CPU time of all processes and of the batch on one thread); the same with full
conflict details (overlap window, band, geodesic area); single queries one at a time (p50/p95/p99).
PostGIS: PostgreSQL 15 + PostGIS 3 started by scripts/setup-postgis.sh on 127.0.0.1; table
(footprint geometry, tstzrange '[)', int4range '[]') with one GiST index over the three
(btree_gist installed); batch = one join of the query table with ST_Intersects and && on both
ranges; single queries timed inside the server (PL/pgSQL, clock_timestamp per query), so neither
side pays a client round trip. The pairs of both must be identical or the run fails.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from hotline.deconfliction import OWN, Engine, Registry, Shape, Volume, format_time
from hotline.deconfliction._geo import buffered_footprints, circle_footprints
from hotline.deconfliction._store import WRITE_BATCH, _row, volumes_table
from hotline.deconfliction._volume import POLYGON_SHAPE
from hotline.store.db import create_store_engine, migrate, sqlite_url

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".bench" / "deconfliction"
T0_US = 1_800_000_000 * 1_000_000  # 2027-01-15T08:00:00Z, a fixed origin for the 7 days
KM_PER_DEG = 111.32


def percentile(xs: list[float], p: float) -> float:
    s = sorted(xs)
    k = (len(s) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def make_volumes(n: int, rng: np.random.Generator, prefix: str) -> list[Volume]:
    """``n`` volumes as in the issue: 60% polygons, 20% circles, 20% corridors."""
    kind = rng.choice(3, size=n, p=[0.6, 0.2, 0.2])
    cx = rng.uniform(34.0, 43.0, n)
    cy = rng.uniform(31.0, 38.0, n)
    across_km = rng.uniform(1.0, 50.0, n)
    lat_deg = across_km / 2 / KM_PER_DEG
    lon_deg = lat_deg / np.cos(np.radians(cy))
    thick = rng.integers(150, 3001, n)
    lower = rng.integers(0, 15001 - thick)
    upper = lower + thick
    dur_s = rng.integers(600, 12 * 3600 + 1, n)
    start_s = rng.integers(0, 7 * 86400 - dur_s)
    footprints = np.empty(n, dtype=object)
    shapes: list[Shape | None] = [None] * n
    errors = np.zeros(n)

    polys = np.flatnonzero(kind == 0)
    k = rng.integers(5, 13, len(polys))
    for i, nv in zip(polys.tolist(), k.tolist(), strict=True):
        # Jittered angles (every gap below pi) around the centre: a simple star-shaped ring.
        ang = (np.arange(nv) + rng.uniform(0.0, 0.8, nv)) * (2 * np.pi / nv)
        rad = rng.uniform(0.4, 1.0, nv)
        ring = np.column_stack(
            (cx[i] + lon_deg[i] * rad * np.cos(ang), cy[i] + lat_deg[i] * rad * np.sin(ang))
        )
        ring = np.vstack([ring, ring[:1]])
        footprints[i] = shapely.Polygon(ring)
        shapes[i] = POLYGON_SHAPE

    circles = np.flatnonzero(kind == 1)
    radius = across_km[circles] * 500.0
    fps, errs, _ = circle_footprints(np.column_stack((cx[circles], cy[circles])), radius)
    for j, i in enumerate(circles.tolist()):
        footprints[i] = fps[j]
        errors[i] = errs[j]
        shapes[i] = Shape.circle((float(cx[i]), float(cy[i])), float(radius[j]))

    corridors = np.flatnonzero(kind == 2)
    half = np.minimum(rng.uniform(250.0, 5000.0, len(corridors)), across_km[corridors] * 250.0)
    lines = []
    for i in corridors.tolist():
        pts = int(rng.integers(2, 5))
        t = np.linspace(-1, 1, pts)
        a = rng.uniform(0, np.pi)
        wiggle = rng.uniform(-0.3, 0.3, pts)
        lines.append(
            np.column_stack(
                (
                    cx[i] + lon_deg[i] * 0.9 * (t * np.cos(a) - wiggle * np.sin(a)),
                    cy[i] + lat_deg[i] * 0.9 * (t * np.sin(a) + wiggle * np.cos(a)),
                )
            )
        )
    fps, errs, _ = buffered_footprints(lines, half)
    for j, i in enumerate(corridors.tolist()):
        footprints[i] = fps[j]
        errors[i] = errs[j]
        shapes[i] = Shape.corridor([(float(x), float(y)) for x, y in lines[j]], float(half[j]))

    invalid = int((~shapely.is_valid(footprints)).sum())
    if invalid:
        raise RuntimeError(f"{invalid} generated footprints are invalid")
    out = []
    for i in range(n):
        shape = shapes[i]
        assert shape is not None
        out.append(
            Volume(
                id=f"{prefix}{i}",
                footprint=footprints[i],
                altitude_lower=float(lower[i]),
                altitude_upper=float(upper[i]),
                time_start_us=T0_US + int(start_s[i]) * 1_000_000,
                time_end_us=T0_US + int(start_s[i] + dur_s[i]) * 1_000_000,
                shape=shape,
                owner=OWN if prefix == "a" else "peer",
                max_error_m=float(errors[i]),
            )
        )
    return out


# ---- hotline -----------------------------------------------------------------------------------


def write_store(directory: Path, volumes: list[Volume]) -> None:
    db = create_store_engine(sqlite_url(directory / "store.sqlite"))
    migrate(db)
    with db.begin() as conn:
        for i in range(0, len(volumes), WRITE_BATCH):
            conn.execute(
                volumes_table.insert(), [_row(v, T0_US) for v in volumes[i : i + WRITE_BATCH]]
            )
    db.dispose()


def load_child(directory: Path, workers: int) -> dict[str, Any]:
    """In a fresh process: open the store, load and index; time and peak memory."""
    out = subprocess.run(
        [sys.executable, __file__, "--load-only", str(directory), "--workers", str(workers)],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def load_only(directory: Path, workers: int) -> None:
    started = time.perf_counter()
    cpu = time.process_time()
    reg = Registry.open(directory, now_us=T0_US, workers=workers)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {"seconds": seconds, "cpu_s": cpu, "count": len(reg.engine), "peak_rss_mib": rss_mib}
        )
    )


def cpu_now(pids: list[int]) -> float:
    """CPU seconds of this process, its reaped children and the live processes ``pids`` (the
    engine's helper processes, read from /proc: 10 ms ticks)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def load_average() -> str:
    return "{:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def bench_hotline(
    active: list[Volume], queries: list[Volume], singles: int, workers: int
) -> dict[str, Any]:
    r: dict[str, Any] = {}
    t = time.perf_counter()
    engine = Engine(workers=workers)
    engine.add(active, rebuild=False)
    engine.rebuild()
    r["index_s"] = time.perf_counter() - t
    gc.freeze()  # as Registry.load does: the collector leaves the long-lived volumes alone
    # The first batch after a change to the index forks the helper process(es); the figure is
    # the median of the three after it (the first is printed too).
    runs, cpus = [], []
    for _ in range(4):
        pids = engine.helper_pids()
        t, c = time.perf_counter(), cpu_now(pids)
        qi, slots = engine.pairs(queries)
        runs.append(time.perf_counter() - t)
        cpus.append(cpu_now(sorted({*pids, *engine.helper_pids()})) - c)
    r["batch_first_s"], r["batch_first_cpu_s"] = runs[0], cpus[0]
    r["batch_s"] = statistics.median(runs[1:])
    r["batch_runs"] = runs[1:]
    r["batch_cpu_s"] = statistics.median(cpus[1:])
    engine.workers = 1
    t = time.process_time()
    engine.pairs(queries)
    r["batch_one_cpu_s"] = time.process_time() - t
    engine.workers = workers
    r["pairs"] = {
        (queries[q].id, engine.volume(s).id)
        for q, s in zip(qi.tolist(), slots.tolist(), strict=True)
    }
    t = time.perf_counter()
    engine.conflicts(queries)
    r["batch_details_s"] = time.perf_counter() - t
    single_engine = engine
    single_engine.workers = 1
    lat = []
    c = time.process_time()
    for q in queries[:singles]:
        t = time.perf_counter()
        single_engine.pairs([q])
        lat.append(time.perf_counter() - t)
    r["single_cpu_ms"] = (time.process_time() - c) / max(1, len(lat)) * 1000
    single_engine.workers = workers
    r["single_ms"] = {p: percentile(lat, p) * 1000 for p in (50, 95, 99)}
    engine.close()
    return r


# ---- PostGIS -----------------------------------------------------------------------------------


class Psql:
    def __init__(self, port: int) -> None:
        self.base = [
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "postgres",
            "-d",
            "hotline_bench",
            "-v",
            "ON_ERROR_STOP=1",
            "-qAt",
        ]

    def run(self, sql: str) -> str:
        return subprocess.run(
            [*self.base, "-c", sql], check=True, capture_output=True, text=True
        ).stdout

    def timed(self, sql: str) -> tuple[float, str]:
        script = f"\\timing on\n{sql}\n"
        out = subprocess.run(
            self.base, input=script, check=True, capture_output=True, text=True
        ).stdout
        ms = [float(line.split()[1]) for line in out.splitlines() if line.startswith("Time: ")]
        return sum(ms) / 1000, out

    def copy_in(self, table: str, volumes: list[Volume]) -> None:
        proc = subprocess.Popen(
            [*self.base, "-c", f"COPY {table} (id, fp, t, alt) FROM STDIN"],
            stdin=subprocess.PIPE,
            text=True,
        )
        assert proc.stdin is not None
        for i in range(0, len(volumes), 20_000):
            chunk = volumes[i : i + 20_000]
            wkb = shapely.to_wkb(
                np.array([v.footprint for v in chunk], dtype=object), hex=True, include_srid=False
            )
            proc.stdin.write(
                "".join(
                    f"{v.id}\tSRID=4326;{h}\t[{format_time(v.time_start_us)},"
                    f"{format_time(v.time_end_us)})\t[{int(v.altitude_lower)},"
                    f"{int(v.altitude_upper)}]\n"
                    for v, h in zip(chunk, wkb, strict=True)
                )
            )
        proc.stdin.close()
        if proc.wait() != 0:
            raise RuntimeError("COPY into PostGIS failed")


def start_postgis() -> int:
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "setup-postgis.sh")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return int(out.strip().splitlines()[-1].split("=", 1)[1])


def bench_postgis(
    psql: Psql, active: list[Volume], queries: list[Volume], singles: int
) -> dict[str, Any]:
    r: dict[str, Any] = {}
    table = (
        "drop table if exists {0}; create unlogged table {0} (id text primary key, "
        "fp geometry(Geometry, 4326) not null, t tstzrange not null, alt int4range not null);"
    )
    psql.run(table.format("active") + table.format("queries"))
    t = time.perf_counter()
    psql.copy_in("active", active)
    psql.run("create index active_4d on active using gist (fp, t, alt); analyze active;")
    r["index_s"] = time.perf_counter() - t
    psql.copy_in("queries", queries)
    psql.run("analyze queries;")
    join = (
        "select q.id as qid, a.id as aid from queries q join active a on a.fp && q.fp "
        "and a.t && q.t and a.alt && q.alt and st_intersects(a.fp, q.fp)"
    )
    runs = []
    for _ in range(3):
        seconds, _ = psql.timed(f"create temp table res as {join};")
        runs.append(seconds)
    r["batch_s"] = statistics.median(runs)
    r["batch_runs"] = runs
    out = psql.run(f"copy ({join}) to stdout")
    r["pairs"] = {tuple(line.split("\t")) for line in out.splitlines() if line}
    ids = ",".join(f"'{q.id}'" for q in queries[:singles])
    sql = f"""
create temp table lat (ms float8);
do $$
declare q record; t0 timestamptz; n int;
begin
  for q in select * from queries where id in ({ids}) loop
    t0 := clock_timestamp();
    select count(*) into n from active a
      where a.fp && q.fp and a.t && q.t and a.alt && q.alt and st_intersects(a.fp, q.fp);
    insert into lat values (extract(epoch from clock_timestamp() - t0) * 1000);
  end loop;
end $$;
select percentile_cont(array[0.5, 0.95, 0.99]) within group (order by ms) from lat;
"""
    out = subprocess.run(psql.base, input=sql, check=True, capture_output=True, text=True).stdout
    p50, p95, p99 = (float(x) for x in out.strip().splitlines()[-1].strip("{}").split(","))
    r["single_ms"] = {50: p50, 95: p95, 99: p99}
    psql.run("drop table active; drop table queries;")
    return r


# ---- main --------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--singles", type=int, default=2_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-postgis", action="store_true")
    ap.add_argument("--load-only", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.load_only:
        load_only(args.load_only, args.workers)
        return 0
    port = None if args.no_postgis else start_postgis()
    failed = False
    verdicts: list[str] = []
    for size in (int(s) for s in args.sizes.split(",")):
        rng = np.random.default_rng(args.seed)
        t = time.perf_counter()
        active = make_volumes(size, rng, "a")
        queries = make_volumes(args.queries, rng, "q")
        print(
            f"\n== {size:,} active volumes, {len(queries):,} queries "
            f"(data made in {time.perf_counter() - t:.1f} s; load average {load_average()})",
            flush=True,
        )
        WORK.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=WORK) as tmp:
            write_store(Path(tmp), active)
            load = load_child(Path(tmp), args.workers)
        print(
            f"hotline  store load+index {load['seconds']:.2f} s ({load['cpu_s']:.2f} s CPU; "
            f"{load['count']:,} volumes, peak RSS {load['peak_rss_mib']:.0f} MiB) "
            f"[load average {load_average()}]",
            flush=True,
        )
        h = bench_hotline(active, queries, args.singles, args.workers)
        print(f"hotline  in-memory index {h['index_s']:.2f} s")
        print(
            f"hotline  batch {h['batch_s'] * 1000:.1f} ms (runs "
            f"{', '.join(f'{x * 1000:.0f}' for x in h['batch_runs'])} ms; CPU "
            f"{h['batch_cpu_s'] * 1000:.0f} ms in all processes, "
            f"{h['batch_one_cpu_s'] * 1000:.0f} ms on one thread; first batch, which forks "
            f"the helper, {h['batch_first_s'] * 1000:.0f} ms, CPU "
            f"{h['batch_first_cpu_s'] * 1000:.0f} ms), "
            f"{len(h['pairs']):,} conflicting pairs; with details (window, band, area) "
            f"{h['batch_details_s']:.2f} s [load average {load_average()}]"
        )
        s = h["single_ms"]
        print(
            f"hotline  single query p50 {s[50]:.3f} ms  p95 {s[95]:.3f} ms  p99 {s[99]:.3f} ms "
            f"(CPU {h['single_cpu_ms']:.3f} ms a query) [load average {load_average()}]",
            flush=True,
        )
        tag = f"{size:,}"
        if size == 1_000_000:
            ok = s[99] < 0.5
            verdicts.append(f"single-query p99 < 0.5 ms at {tag}: {s[99]:.3f} ms: {_pass(ok)}")
            ok = load["seconds"] < 30 and load["peak_rss_mib"] < 2048
            verdicts.append(
                f"load+index from the store < 30 s within 2 GiB at {tag}: {load['seconds']:.1f} s,"
                f" {load['peak_rss_mib']:.0f} MiB: {_pass(ok)}"
            )
        if port is not None:
            g = bench_postgis(Psql(port), active, queries, args.singles)
            same = g["pairs"] == h["pairs"]
            print(
                f"postgis  load+index {g['index_s']:.2f} s; batch {g['batch_s'] * 1000:.1f} ms "
                f"(runs {', '.join(f'{x * 1000:.0f}' for x in g['batch_runs'])} ms), "
                f"{len(g['pairs']):,} pairs [load average {load_average()}]"
            )
            s = g["single_ms"]
            print(
                f"postgis  single query p50 {s[50]:.3f} ms  p95 {s[95]:.3f} ms  p99 {s[99]:.3f} ms"
            )
            print(f"pairs identical: {same}")
            if not same:
                failed = True
                print(f"  only hotline: {sorted(h['pairs'] - g['pairs'])[:10]}")
                print(f"  only postgis: {sorted(g['pairs'] - h['pairs'])[:10]}")
            ratio = g["batch_s"] / h["batch_s"]
            print(
                f"ratio    batch PostGIS/hotline {ratio:.1f}x; "
                f"single p99 {g['single_ms'][99] / h['single_ms'][99]:.1f}x"
            )
            verdicts.append(
                f"batch >= 10x PostGIS at {tag}: {ratio:.1f}x "
                f"({g['batch_s'] * 1000:.0f} / {h['batch_s'] * 1000:.0f} ms): {_pass(ratio >= 10)}"
            )
        sys.stdout.flush()
    print(f"\n== issue 5 targets (load average {load_average()})")
    for line in verdicts:
        print(f"  {line}")
    if WORK.exists() and not any(WORK.iterdir()):
        shutil.rmtree(WORK)
    return 1 if failed else 0


def _pass(ok: bool) -> str:
    return "met" if ok else "NOT met"


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
