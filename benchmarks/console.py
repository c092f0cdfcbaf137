"""Console benchmark: page times with 10,000 messages and 1,000 volumes, and live-update latency.

    .venv/bin/python benchmarks/console.py [--messages 10000] [--volumes 1000] [--requests 100]

Two real nodes (washington, moscow) on loopback under .bench/console/. Moscow sends half the
messages to Washington and Washington the other half to Moscow, through the link (batches of
256 via the local API), so Washington's store holds them all with their events and receipts; a
tenth of the received ones are activity notifications. 1,000 own volumes are filed in
Washington's deconfliction registry. Then, logged in as an operator (a session made in the
store), each page is fetched ``--requests`` times in turn over HTTP and timed to the last byte.

Live updates: with Washington's inbox open in Debian's Chromium (if /usr/bin/chromium exists),
Moscow sends a message through its local API; timed from the send call returning to the open
page showing one more waiting message (delivery between the nodes included). Also timed
without a browser: from the send call to the ``change`` event on an open /events stream.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _stats import print_table, summarize

from hotline.deconfliction import Registry, parse_geojson, to_us
from hotline.node.home import NodeHome
from hotline.operators import OperatorRegistry
from link import _free_port, _start

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".bench" / "console"
CHROMIUM = Path("/usr/bin/chromium")
PAGES = [
    "/links",
    "/inbox",
    "/outbox",
    "/compose",
    "/compose?type=activity_notification",
    "/releases",
    "/map",
    "/map/data.json",
    "/inbox/live",
]
#: FLASH needs a second person's release (the release queue), so the bulk load uses the rest.
PRIORITIES = ["immediate", "priority", "routine"]


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


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
            tls=False,  # a browser or third-party client cannot know the pinned certificate
        )
        for name in ("washington", "moscow")
    }
    now = datetime.now(UTC)
    for name, home in homes.items():
        other = homes["moscow" if name == "washington" else "washington"]
        card = other.card(now)
        home.add_peer(card, card.fingerprint, now)
    return homes


def _iso(t: datetime) -> str:
    return t.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _activity(rng: random.Random, now: datetime) -> dict[str, Any]:
    start = now + timedelta(hours=rng.randint(1, 48))
    return {
        "kind": "air",
        "volumes": [
            {
                "footprint": {
                    "type": "Circle",
                    "center": [rng.uniform(10, 40), rng.uniform(45, 65)],
                    "radius_m": rng.uniform(5_000, 50_000),
                },
                "altitude": {"lower_m": 0, "upper_m": rng.uniform(1_000, 12_000)},
                "window": {"start": _iso(start), "end": _iso(start + timedelta(hours=4))},
            }
        ],
        "units": ["Squadron"],
        "contact": "air operations desk",
    }


def _fill(homes: dict[str, NodeHome], messages: int, rng: random.Random) -> float:
    """Send ``messages`` through the link (half each way); returns seconds taken."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    per_side = messages // 2
    for sender, to in (("moscow", "washington"), ("washington", "moscow")):
        home = homes[sender]
        with httpx.Client(
            base_url=home.config.endpoint,
            headers={"authorization": f"Bearer {home.api_token}"},
            timeout=120,
        ) as api:
            for start in range(0, per_side, 256):
                batch = []
                for i in range(start, min(start + 256, per_side)):
                    if sender == "moscow" and i % 10 == 0:
                        body, kind = _activity(rng, now), "activity_notification"
                    else:
                        body, kind = (
                            {"text": f"message {i} " + "x" * 300, "lang": "en"},
                            "free_text",
                        )
                    batch.append(
                        {"to": to, "type": kind, "priority": rng.choice(PRIORITIES), "body": body}
                    )
                response = api.post("/api/v1/messages/batch", json=batch)
                if response.status_code != 200:
                    raise RuntimeError(f"batch refused: {response.text[:500]}")
    # Wait until Washington holds every message.
    home = homes["washington"]
    deadline = time.monotonic() + 600
    with httpx.Client(
        base_url=home.config.endpoint,
        headers={"authorization": f"Bearer {home.api_token}"},
        timeout=30,
    ) as api:
        while time.monotonic() < deadline:
            counts = _count(home)
            if counts >= messages:
                break
            time.sleep(1.0)
        del api
    return time.perf_counter() - started


def _count(home: NodeHome) -> int:
    from sqlalchemy import func, select

    from hotline.store.schema import messages

    with home.store.read() as conn:
        total = conn.execute(
            select(func.count()).select_from(messages).where(messages.c.kind == "message")
        ).scalar()
    return int(total or 0)


def _volumes(home: NodeHome, n: int, rng: random.Random) -> None:
    now = datetime.now(UTC)
    features = []
    for i in range(n):
        lon, lat = rng.uniform(-170, 170), rng.uniform(-70, 70)
        d = rng.uniform(0.1, 1.0)
        start = now + timedelta(hours=rng.randint(0, 72))
        features.append(
            {
                "type": "Feature",
                "id": f"plan-{i}",
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [
                        [[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat + d], [lon, lat]]
                    ],
                },
                "properties": {
                    "altitude_lower": 0,
                    "altitude_upper": rng.uniform(500, 10_000),
                    "time_start": _iso(start),
                    "time_end": _iso(start + timedelta(hours=6)),
                },
            }
        )
    vols = parse_geojson({"type": "FeatureCollection", "features": features})
    registry = Registry(home.store.engine, workers=1)
    registry.add(vols, now_us=to_us(now))


def _session(home: NodeHome) -> str:
    registry = OperatorRegistry(home.store, issuer="bench")
    new = registry.add("bench", "releaser", "benchmark password", now=datetime.now(UTC))
    token, _ = registry.create_session(new.operator, now=datetime.now(UTC))
    return token


def _time_pages(base: str, token: str, requests: int) -> list[list[object]]:
    rows: list[list[object]] = []
    cookie = {"cookie": f"__Host-hotline-session={token}"}
    with httpx.Client(base_url=base, headers=cookie, timeout=30) as client:
        first = client.get("/inbox")
        first.raise_for_status()
        import re

        found = re.search(r'href="/messages/([0-9a-f-]{36})"', first.text)
        pages = [*PAGES, f"/messages/{found.group(1)}"] if found else PAGES
        for path in pages:
            samples = []
            size = 0
            t0 = time.perf_counter()
            client.get(path).raise_for_status()
            first = time.perf_counter() - t0
            for _ in range(requests):
                t0 = time.perf_counter()
                response = client.get(path)
                size = len(response.content)
                samples.append(time.perf_counter() - t0)
                if response.status_code != 200:
                    raise RuntimeError(f"{path}: HTTP {response.status_code}")
            s = summarize(samples)
            shown = path if not path.startswith("/messages/") else "/messages/ID"
            rows.append([shown, f"{size / 1024:.0f}", first * 1000, s.p50_ms, s.p95_ms, s.max_ms])
    return rows


def _time_sse(homes: dict[str, NodeHome], token: str, n: int) -> list[float]:
    """From Moscow's send call returning to the change event on Washington's open stream."""
    home = homes["washington"]
    events: list[float] = []
    ready = threading.Event()
    stop = threading.Event()

    def listen() -> None:
        cookie = {"cookie": f"__Host-hotline-session={token}"}
        with httpx.Client(base_url=home.config.endpoint, headers=cookie, timeout=None) as c:
            while not stop.is_set():
                with c.stream("GET", "/events") as stream:
                    ready.set()
                    for line in stream.iter_lines():
                        if line == "data: messages" or (
                            line.startswith("data: ") and "messages" in line
                        ):
                            events.append(time.perf_counter())
                        if stop.is_set():
                            return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    ready.wait(10)
    time.sleep(0.5)
    moscow = homes["moscow"]
    out = []
    with httpx.Client(
        base_url=moscow.config.endpoint,
        headers={"authorization": f"Bearer {moscow.api_token}"},
        timeout=30,
    ) as api:
        for i in range(n):
            time.sleep(1.2)  # let heartbeats and earlier changes settle
            seen = len(events)
            api.post(
                "/api/v1/messages",
                json={"to": "washington", "priority": "immediate", "text": f"live {i}"},
            ).raise_for_status()
            sent = time.perf_counter()
            deadline = sent + 5
            while time.perf_counter() < deadline and len(events) == seen:
                time.sleep(0.002)
            if len(events) > seen:
                out.append(events[seen] - sent)
    stop.set()
    return out


def _time_browser(homes: dict[str, NodeHome], token: str, n: int) -> list[float]:
    """From Moscow's send call returning to the row showing in Washington's open inbox."""
    from playwright.sync_api import sync_playwright

    home = homes["washington"]
    out = []
    args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ]
    moscow = homes["moscow"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=args)
        context = browser.new_context()
        host = home.config.endpoint.split("//", 1)[1].split(":")[0]
        context.add_cookies(
            [
                {
                    "name": "__Host-hotline-session",
                    "value": token,
                    "domain": host,
                    "path": "/",
                    "secure": True,
                    "httpOnly": True,
                    "sameSite": "Strict",
                }
            ]
        )
        page = context.new_page()
        page.goto(f"{home.config.endpoint}/inbox")
        page.wait_for_selector("body[data-live-connected=yes]")
        with httpx.Client(
            base_url=moscow.config.endpoint,
            headers={"authorization": f"Bearer {moscow.api_token}"},
            timeout=30,
        ) as api:
            for i in range(n):
                time.sleep(1.2)
                marker = f"browser-live-{i}"
                before = int(page.inner_text("#pending-count"))
                api.post(
                    "/api/v1/messages",
                    json={"to": "washington", "priority": "immediate", "text": marker},
                ).raise_for_status()
                sent = time.perf_counter()
                # The inbox lists the 200 most urgent; a new message may be below them, so
                # the page's count of waiting messages is what is watched.
                page.wait_for_selector(f"#pending-count:text-is('{before + 1}')", timeout=10_000)
                out.append(time.perf_counter() - sent)
        browser.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--volumes", type=int, default=1_000)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--live", type=int, default=20)
    args = parser.parse_args(argv)
    rng = random.Random(7)
    homes = _setup()
    _volumes(homes["washington"], args.volumes, rng)
    token = _session(homes["washington"])
    processes = {name: _start(home) for name, home in homes.items()}
    try:
        fill_s = _fill(homes, args.messages, rng)
        held = _count(homes["washington"])
        print(
            f"store: {held} messages in washington's store (filled in {fill_s:.1f} s), "
            f"{args.volumes} own volumes in the registry"
        )
        rows = _time_pages(homes["washington"].config.endpoint, token, args.requests)
        print_table(["page", "KiB", "first ms", "p50 ms", "p95 ms", "max ms"], rows)
        sse = _time_sse(homes, token, args.live)
        if sse:
            s = summarize(sse)
            print(
                f"live event on an open /events stream after the peer's send call: "
                f"p50 {s.p50_ms:.0f} ms, p95 {s.p95_ms:.0f} ms, max {s.max_ms:.0f} ms "
                f"({len(sse)}/{args.live} arrived)"
            )
        if CHROMIUM.exists():
            shown = _time_browser(homes, token, args.live)
            s = summarize(shown)
            print(
                "waiting count updated in the open inbox (Chromium) after the peer's send call: "
                f"p50 {s.p50_ms:.0f} ms, p95 {s.p95_ms:.0f} ms, max {s.max_ms:.0f} ms "
                f"({len(shown)}/{args.live})"
            )
        result = {"messages": held, "volumes": args.volumes, "pages": rows}
        (WORK / "result.json").write_text(json.dumps(result, indent=2))
    finally:
        for process in processes.values():
            _stop(process)
        for home in homes.values():
            home.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
