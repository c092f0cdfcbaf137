"""Link latency, two versions of the code side by side, under the same machine load.

    .venv/bin/python benchmarks/link_ab.py OTHER_SRC [--messages 300]

Starts two washington -> moscow pairs like benchmarks/link.py: pair A runs the code under
OTHER_SRC (a ``src`` folder, e.g. ``git archive <commit> src | tar -x -C /tmp/old``), pair B this
checkout's. Messages go one at a time, alternately to A and to B (A first on even rounds, B first
on odd ones), so that both see the same load: on a shared machine two runs taken one after the
other differ by more than most changes do. Prints each pair's p50/p90 from the send call to the
DELIVERED receipt and each node's CPU time per message.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _stats import percentile

from hotline.node.home import NodeHome
from link import ROOT, TEXT, _start, cpu_seconds, linked_homes

WORK = ROOT / ".bench" / "link_ab"


def _client(home: NodeHome) -> httpx.Client:
    return httpx.Client(
        base_url=home.config.endpoint,
        verify=home.local_verify(),
        headers={"authorization": f"Bearer {home.api_token}"},
        timeout=60,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("other_src", type=Path, help="the src folder of the code to compare")
    parser.add_argument("--messages", type=int, default=300)
    args = parser.parse_args()

    homes: dict[str, dict[str, NodeHome]] = {}
    processes: dict[str, list[subprocess.Popen[bytes]]] = {}
    saved = os.environ.get("PYTHONPATH")
    try:
        for tag in ("A", "B"):
            # The stores are made by this checkout's code: OTHER_SRC must know its migrations.
            homes[tag] = linked_homes(WORK / tag)
            if tag == "A":
                os.environ["PYTHONPATH"] = str(args.other_src.resolve())
            elif saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved
            processes[tag] = [_start(h) for h in homes[tag].values()]
        clients = {tag: _client(pair["washington"]) for tag, pair in homes.items()}

        def send_and_wait(tag: str) -> float:
            started = time.perf_counter()
            view = (
                clients[tag]
                .post(
                    "/api/v1/messages",
                    params={"wait": "delivered", "timeout": 30},
                    json={"to": "moscow", "priority": "immediate", "text": TEXT},
                )
                .json()
            )
            if view["state"] != "delivered":
                raise RuntimeError(f"{tag}: not delivered: {view['state']}")
            return time.perf_counter() - started

        for _ in range(30):
            send_and_wait("A")
            send_and_wait("B")
        cpu_start = {t: [cpu_seconds(p.pid) for p in ps] for t, ps in processes.items()}
        latencies: dict[str, list[float]] = {"A": [], "B": []}
        for n in range(args.messages):
            for tag in ("A", "B") if n % 2 == 0 else ("B", "A"):
                latencies[tag].append(send_and_wait(tag))
        cpu_end = {t: [cpu_seconds(p.pid) for p in ps] for t, ps in processes.items()}
        for client in clients.values():
            client.close()
    finally:
        for pair in processes.values():
            for process in pair:
                os.killpg(process.pid, signal.SIGTERM)
        for pair in processes.values():
            for process in pair:
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        for nodes in homes.values():
            for home in nodes.values():
                home.close()
    for tag, label in (("A", str(args.other_src)), ("B", "this checkout")):
        sender, receiver = (
            (b - a) * 1000 / args.messages
            for a, b in zip(cpu_start[tag], cpu_end[tag], strict=True)
        )
        print(
            f"{tag} ({label}): p50 {percentile(latencies[tag], 50) * 1000:.2f} ms, "
            f"p90 {percentile(latencies[tag], 90) * 1000:.2f} ms; CPU per message, "
            f"sender {sender:.2f} ms, receiver {receiver:.2f} ms"
        )
    print(f"machine load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
