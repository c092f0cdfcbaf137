"""TAXII benchmark: hotline's TAXII 2.1 server against medallion, with taxii2-client as the client.

Standalone (not part of ``make test``):

    .venv/bin/python benchmarks/taxii.py                 # 2,000 both; hotline 10^4 and 10^5
    .venv/bin/python benchmarks/taxii.py --sizes 2000 --skip-medallion

What is measured, with the OASIS ``taxii2-client`` (``as_pages``, pages of 1,000 objects):

* ``page through``: every page of a collection, first request to last envelope parsed;
* ``added_after page``: one ``get_objects(added_after=T, limit=1000)`` where T is the time the
  middle of the collection was added (so the page holds 1,000 objects and ``more`` is true).

medallion 3.0.0 (the OASIS reference server) runs from its own venv (``.bench/medallion-venv``)
with its memory backend on 127.0.0.1, its collection loaded through its data file (its
``add_objects`` scans the collection per object). hotline runs as ``hotline serve`` (uvicorn,
one process) on a fresh node directory under ``.bench/taxii/``; the objects are persisted in
its SQLite store (WAL, synchronous=FULL) through ``collections.add_objects``, 1,000 per
transaction, each batch added one millisecond after the previous one.

The same objects (indicators of ~430 bytes) go to both servers.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

if __package__ in (None, ""):  # run as a script: make ``benchmarks/`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from _stats import format_table

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / ".bench"
MEDALLION_VERSION = "3.0.0"
PAGE = 1_000
USER, PASSWORD = "bench", "bench password 0123456789"
#: medallion answers the first page of 2,000 objects in ~20 s here; 10^4 in over 40 s.
MEDALLION_TIMEOUT_S = 300.0
STARTUP_TIMEOUT_S = 60.0
INSTALL_TIMEOUT_S = 900.0
BASE_US = 1_795_000_000_000_000  # 2026-11-17T...Z: when the first batch was "added"
BATCH_STEP_US = 1_000


def indicator(i: int) -> dict[str, Any]:
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{uuid.UUID(int=i + 1, version=4)}",
        "created": "2026-11-18T00:00:00.000Z",
        "modified": "2026-11-18T00:00:00.000Z",
        "name": f"Scanner address {i}",
        "description": "Source of scans against a power-grid operator.",
        "indicator_types": ["malicious-activity"],
        "pattern": f"[ipv4-addr:value = '10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}']",
        "pattern_type": "stix",
        "valid_from": "2026-11-18T00:00:00Z",
        "object_marking_refs": ["marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"],
    }


def added_us(i: int) -> int:
    """When object ``i`` was added: batches of PAGE objects, one millisecond apart."""
    return BASE_US + (i // PAGE) * BATCH_STEP_US


def stamp(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            r = httpx.get(
                url,
                auth=(USER, PASSWORD),
                headers={"accept": "application/taxii+json;version=2.1"},
                timeout=2.0,
            )
            if r.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server did not start: {log.read_text()[-2000:]}")


@contextmanager
def running(argv: list[str], url: str, log: Path, **kw: Any) -> Iterator[None]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kw
        )
    try:
        wait_ready(url, proc, log)
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- measurement -----------------------------------------------------------------------------


@dataclass(slots=True)
class Result:
    server: str
    objects: int
    page_through_s: list[float]
    pages: int
    first_page_s: list[float]
    last_page_s: list[float]
    added_after_s: list[float]
    added_after_count: int


def measure(name: str, collection_url: str, n: int, runs: int, added_after: str) -> Result:
    from taxii2client.v21 import Collection, as_pages

    collection = Collection(collection_url, user=USER, password=PASSWORD)
    through, firsts, lasts, after = [], [], [], []
    pages = count_after = 0
    for _ in range(runs):
        started = time.perf_counter()
        marks = []
        total = 0
        for envelope in as_pages(collection.get_objects, per_request=PAGE):
            marks.append(time.perf_counter())
            total += len(envelope.get("objects", []))
        through.append(marks[-1] - started)
        firsts.append(marks[0] - started)
        lasts.append(marks[-1] - (marks[-2] if len(marks) > 1 else started))
        pages = len(marks)
        if total != n:
            raise RuntimeError(f"{name}: paged {total} objects, expected {n}")
        started = time.perf_counter()
        envelope = collection.get_objects(added_after=added_after, limit=PAGE)
        after.append(time.perf_counter() - started)
        count_after = len(envelope.get("objects", []))
    return Result(name, n, through, pages, firsts, lasts, after, count_after)


# -- medallion -------------------------------------------------------------------------------


def ensure_medallion() -> Path:
    venv = BENCH / "medallion-venv"
    python = venv / "bin" / "python"
    stamp_file = venv / ".hotline-medallion-version"
    if (
        python.exists()
        and stamp_file.exists()
        and stamp_file.read_text().strip() == MEDALLION_VERSION
    ):
        return venv
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", f"medallion=={MEDALLION_VERSION}"],
        check=True,
        timeout=INSTALL_TIMEOUT_S,
    )
    stamp_file.write_text(MEDALLION_VERSION + "\n")
    return venv


def medallion_run(n: int, runs: int, workdir: Path) -> Result:
    venv = ensure_medallion()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    collection_id = "91a7b528-80eb-42ed-a74d-c6fbd5a26116"
    objects = [indicator(i) for i in range(n)]
    data = {
        "/discovery": {
            "title": "bench",
            "description": "benchmark",
            "default": f"{base}/api1/",
            "api_roots": [f"{base}/api1/"],
        },
        "api1": {
            "information": {
                "title": "api1",
                "description": "benchmark",
                "versions": ["application/taxii+json;version=2.1"],
                "max_content_length": 100_000_000,
            },
            "status": [],
            "collections": [
                {
                    "id": collection_id,
                    "title": "bench",
                    "description": "benchmark",
                    "can_read": True,
                    "can_write": False,
                    "media_types": ["application/stix+json;version=2.1"],
                    "objects": objects,
                    "manifest": [
                        {
                            "id": o["id"],
                            "date_added": stamp(added_us(i)),
                            "version": o["modified"],
                            "media_type": "application/stix+json;version=2.1",
                        }
                        for i, o in enumerate(objects)
                    ],
                }
            ],
        },
    }
    data_file = workdir / "medallion-data.json"
    data_file.write_text(json.dumps(data))
    config = {
        "backend": {
            "module": "medallion.backends.memory_backend",
            "module_class": "MemoryBackend",
            "filename": str(data_file),
        },
        "users": {USER: PASSWORD},
        "taxii": {"max_page_size": PAGE},
    }
    config_file = workdir / "medallion-config.json"
    config_file.write_text(json.dumps(config))
    argv = [
        str(venv / "bin" / "medallion"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "WARN",
        str(config_file),
    ]
    with running(argv, f"{base}/taxii2/", workdir / "medallion.log"):
        url = f"{base}/api1/collections/{collection_id}/"
        return measure("medallion", url, n, runs, stamp(added_us(n // 2) - 1))


# -- hotline ---------------------------------------------------------------------------------


def hotline_run(n: int, runs: int, workdir: Path) -> Result:
    from hotline.node.home import NodeHome
    from hotline.referrals import taxii
    from hotline.referrals.collections import Direction, add_objects, collection_id

    now = datetime.now(UTC)
    shutil.rmtree(workdir, ignore_errors=True)
    port = free_port()
    homes = {
        name: NodeHome.init(
            workdir / name,
            name=name,
            listen=f"127.0.0.1:{free_port() if name == 'moscow' else port}",
            display_names={"en": name},
            tls=False,  # a browser or third-party client cannot know the pinned certificate
        )
        for name in ("washington", "moscow")
    }
    card = homes["moscow"].card(now)
    home = homes["washington"]
    home.add_peer(card, card.fingerprint, now)
    cid = collection_id("moscow", Direction.RECEIVED)
    loaded = time.perf_counter()
    for start in range(0, n, PAGE):
        batch = [indicator(i) for i in range(start, min(n, start + PAGE))]
        with home.store.write() as conn:
            add_objects(conn, cid, "bench", batch, added_us(start))
    load_s = time.perf_counter() - loaded
    with home.store.write() as conn:
        taxii.add_user(conn, USER, PASSWORD, now)
    home.close()
    print(f"hotline: {n} objects persisted in {load_s:.1f} s", flush=True)
    base = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "hotline", "serve", "--dir", str(home.dir)]
    with running(argv, f"{base}/taxii2/", workdir / "hotline.log"):
        url = f"{base}/taxii2/{taxii.API_ROOT}/collections/{cid}/"
        return measure("hotline", url, n, runs, stamp(added_us(n // 2) - 1))


# -- report ----------------------------------------------------------------------------------


def ms(values: list[float]) -> float:
    return 1000.0 * statistics.median(values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,10000,100000")
    parser.add_argument("--medallion-size", type=int, default=2000)
    parser.add_argument("--medallion-runs", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--skip-medallion", action="store_true")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    workdir = BENCH / "taxii"
    workdir.mkdir(parents=True, exist_ok=True)
    results: list[Result] = []
    if not args.skip_medallion:
        mdir = workdir / "medallion"
        shutil.rmtree(mdir, ignore_errors=True)
        mdir.mkdir(parents=True)
        results.append(medallion_run(args.medallion_size, args.medallion_runs, mdir))
        print("medallion done", flush=True)
    for n in sizes:
        results.append(hotline_run(n, args.runs, workdir / f"hotline-{n}"))
        print(f"hotline {n} done", flush=True)
    rows = [
        (
            r.server,
            r.objects,
            r.pages,
            len(r.page_through_s),
            ms(r.page_through_s),
            ms(r.page_through_s) / r.pages,
            ms(r.first_page_s),
            ms(r.last_page_s),
            ms(r.added_after_s),
            r.added_after_count,
        )
        for r in results
    ]
    headers = (
        "server",
        "objects",
        "pages",
        "runs",
        "page through (ms)",
        "per page (ms)",
        "first page (ms)",
        "last page (ms)",
        "added_after page (ms)",
        "objects in it",
    )
    print(format_table(headers, rows))
    med = next((r for r in results if r.server == "medallion"), None)
    if med is not None:
        same = next(
            (r for r in results if r.server == "hotline" and r.objects == med.objects), None
        )
        if same is not None:
            print(
                f"speed-up at {med.objects}: page through x"
                f"{ms(med.page_through_s) / ms(same.page_through_s):.0f}, added_after page x"
                f"{ms(med.added_after_s) / ms(same.added_after_s):.0f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
