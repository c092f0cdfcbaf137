"""Link benchmark: two real hotline nodes on loopback against Matrix Synapse in the same run.

    .venv/bin/python benchmarks/link.py [--messages 300] [--burst 2000] [--no-synapse]

hotline: 1 KiB text messages; latency from the local API's send call to the DELIVERED receipt
being committed at the sender (post-quantum encryption, two signatures per message and per
receipt, durable commits on both sides), one message at a time; then a burst of N messages
submitted as fast as the API takes them, timed until the last DELIVERED receipt.
Synapse: two users in a room, both /sync long-polls open, the same 1 KiB text: send -> arrival
at B, and send -> B's read receipt back at A (like for like with hotline's DELIVERED receipt).
Both systems run side by side and their latencies are timed in rounds, in turn, so that the
ratio compares them under the same machine load (on this shared machine, two runs taken a
minute apart differ by more than 10%).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _stats import percentile, summarize

from hotline.node.home import NodeHome

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".bench" / "link"
TEXT = "x" * 1024


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(home: NodeHome) -> subprocess.Popen[bytes]:
    with (home.dir / "serve.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "hotline", "serve", "--dir", str(home.dir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if (
                httpx.get(
                    f"{home.config.endpoint}/healthz", timeout=0.5, verify=home.local_verify()
                ).status_code
                == 200
            ):
                return process
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{home.config.name} did not start")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; 0.0 elsewhere). Unlike wall
    time it hardly moves with the machine's load: what the benchmark's phases cost each node."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def linked_homes(work: Path, store_url: Callable[[], str] = str) -> dict[str, NodeHome]:
    """washington and moscow in fresh folders under ``work``, each the other's peer;
    ``store_url()`` gives each node's store (empty: SQLite in its folder)."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    homes = {
        name: NodeHome.init(
            work / name,
            name=name,
            listen=f"127.0.0.1:{_free_port()}",
            display_names={"en": name},
            store_url=store_url(),
        )
        for name in ("washington", "moscow")
    }
    now = datetime.now(UTC)
    for name, home in homes.items():
        other = homes["moscow" if name == "washington" else "washington"]
        card = other.card(now)
        home.add_peer(card, card.fingerprint, now)
    return homes


def measure_hotline(messages: int, burst: int) -> dict[str, Any]:
    return measure_nodes(linked_homes(WORK), messages, burst)


class Pair:
    """washington and moscow running, with an operator API client of washington's."""

    def __init__(self, homes: dict[str, NodeHome]) -> None:
        self.homes = homes
        self.processes = [_start(h) for h in homes.values()]
        w = homes["washington"]
        self.api = httpx.Client(
            base_url=w.config.endpoint,
            verify=w.local_verify(),
            headers={"authorization": f"Bearer {w.api_token}"},
            timeout=60,
        )

    def close(self) -> None:
        self.api.close()
        for p in self.processes:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=10)
        for h in self.homes.values():
            h.close()

    def cpu(self) -> list[float]:
        return [cpu_seconds(p.pid) for p in self.processes]

    def send_and_wait(self) -> float:
        """One message, timed from the send call to its return (protocol §8: it returns once
        the DELIVERED receipt is in)."""
        started = time.perf_counter()
        view = self.api.post(
            "/api/v1/messages",
            params={"wait": "delivered", "timeout": 30},
            json={"to": "moscow", "priority": "immediate", "text": TEXT},
        ).json()
        elapsed = time.perf_counter() - started
        if view["state"] not in ("delivered", "acknowledged", "answered"):
            raise RuntimeError(f"not delivered: {view['state']}")
        return elapsed

    def burst(self, count: int) -> dict[str, Any]:
        """``count`` messages through ``POST /api/v1/messages/batch`` (250 per call, one
        transaction each), timed from the first call to the last DELIVERED receipt."""
        started = time.perf_counter()
        ids: list[str] = []
        for first in range(0, count, 250):
            chunk = [
                {"to": "moscow", "priority": "routine", "text": TEXT}
                for _ in range(min(250, count - first))
            ]
            ids += self.api.post("/api/v1/messages/batch", json=chunk).json()["ids"]
        submitted = time.perf_counter() - started
        # The clock stops when the last message's DELIVERED receipt is in (delivery goes
        # lowest sequence number first); then every message's state is checked, untimed:
        # 2,000 sequential API reads would add seconds of the client's own work.
        deadline = time.monotonic() + 300
        while True:
            view = self.api.get(
                f"/api/v1/messages/{ids[-1]}", params={"wait": "delivered", "timeout": 60}
            ).json()
            if view["state"] in ("delivered", "acknowledged", "answered"):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"last burst message not delivered: {view['state']}")
        total = time.perf_counter() - started
        states = {self.api.get(f"/api/v1/messages/{i}").json()["state"] for i in ids}
        checked = time.perf_counter() - started
        if states != {"delivered"}:
            raise RuntimeError(f"burst states: {states}")
        return {
            "burst": len(ids),
            "burst_submit_s": submitted,
            "burst_total_s": total,
            "burst_per_s": len(ids) / total,
            "burst_checked_s": checked,
        }


#: Untimed messages before the latency is timed (connections, caches and the WAL warm up).
WARMUP = 30


def measure_nodes(
    homes: dict[str, NodeHome],
    messages: int,
    burst: int,
    others: Callable[[], float] | None = None,
    *,
    between: Callable[[], None] | None = None,
    rounds: int = 1,
) -> dict[str, Any]:
    """Start both nodes, measure washington -> moscow, stop them (and close ``homes``).
    ``others()``: CPU seconds so far of processes the nodes use (the PostgreSQL server), read
    when the nodes' are. The latency is timed in ``rounds`` rounds, with ``between()`` run
    after each (another system's round, timed under the same machine load)."""
    pair = Pair(homes)
    try:
        for _ in range(WARMUP):
            pair.send_and_wait()

        def cpu() -> list[float]:
            return [*pair.cpu(), others() if others else 0.0]

        latencies: list[float] = []
        round_p50s: list[float] = []
        cpu_latency = [0.0, 0.0, 0.0]
        for r in range(rounds):
            count = messages // rounds + (1 if r < messages % rounds else 0)
            before = cpu()
            taken = [pair.send_and_wait() for _ in range(count)]
            after = cpu()
            # CPU of the nodes during their own rounds only, not during the other system's.
            cpu_latency = [c + b - a for c, a, b in zip(cpu_latency, before, after, strict=True)]
            latencies += taken
            round_p50s.append(percentile(taken, 50) * 1000)
            if between is not None:
                between()
        cpu_start = cpu()
        result = pair.burst(burst)
        cpu_burst = cpu()
    finally:
        pair.close()
    return {
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "n": len(latencies),
        "round_p50_ms": round_p50s,
        **result,
        # CPU time per message of each node (sender, receiver) and of ``others``, in ms.
        "cpu_latency_ms": [x * 1000 / messages for x in cpu_latency],
        "cpu_burst_ms": [
            (b - a) * 1000 / result["burst"] for a, b in zip(cpu_start, cpu_burst, strict=True)
        ],
    }


#: The latency is timed in this many rounds, hotline's and Synapse's in turn.
ROUNDS = 5


def _print_hotline(hotline: dict[str, Any]) -> None:
    print(
        f"  send -> DELIVERED receipt: p50 {hotline['p50_ms']:.2f} ms, "
        f"p99 {hotline['p99_ms']:.2f} ms (n={hotline['n']})"
    )
    print(
        f"  burst of {hotline['burst']}: all receipted in {hotline['burst_total_s']:.2f} s "
        f"= {hotline['burst_per_s']:.0f} messages/s (API accepted them in "
        f"{hotline['burst_submit_s']:.2f} s; every state read back by "
        f"{hotline['burst_checked_s']:.2f} s)"
    )
    print(
        "  CPU per message, sender / receiver: one at a time "
        "{:.2f} / {:.2f} ms; burst {:.2f} / {:.2f} ms".format(
            *hotline["cpu_latency_ms"][:2], *hotline["cpu_burst_ms"][:2]
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--no-synapse", action="store_true")
    args = parser.parse_args()

    if args.no_synapse:
        print(f"hotline: {args.messages} sequential 1 KiB messages, burst of {args.burst} ...")
        _print_hotline(measure_hotline(args.messages, args.burst))
        print(f"machine load average at the end: {os.getloadavg()}")
        return
    from peers.synapse import SynapseServer, ensure_synapse_venv, timed_rounds

    synapse_messages = min(args.messages, 200)
    print(
        f"hotline ({args.messages} sequential 1 KiB messages) and Synapse ({synapse_messages}, "
        f"the same text, both users' /sync long-polls open) in {ROUNDS} rounds each, in turn; "
        f"then hotline's burst of {args.burst} ..."
    )
    with (
        SynapseServer(ensure_synapse_venv(ROOT / ".bench")) as server,
        timed_rounds(server, synapse_messages) as synapse_rounds,
    ):
        synapse_round_p50s: list[float] = []

        def synapse_round() -> None:
            done = len(synapse_rounds.samples.receipt)
            synapse_rounds.send(synapse_messages // ROUNDS)
            synapse_round_p50s.append(percentile(synapse_rounds.samples.receipt[done:], 50) * 1000)

        hotline = measure_nodes(
            linked_homes(WORK), args.messages, args.burst, between=synapse_round, rounds=ROUNDS
        )
        version = server.version
    _print_hotline(hotline)
    arrival = summarize(synapse_rounds.samples.arrival)
    receipt = summarize(synapse_rounds.samples.receipt)
    print(
        f"  Synapse {version}, send -> B's read receipt back at A: "
        f"p50 {receipt.p50_ms:.2f} ms, p99 {receipt.p99_ms:.2f} ms (n={receipt.n})"
    )
    print(
        f"  Synapse {version}, send -> arrival at B (one way): p50 {arrival.p50_ms:.2f} ms, "
        f"p99 {arrival.p99_ms:.2f} ms"
    )
    # Like for like: hotline's figure runs from send to the DELIVERED receipt back at the sender.
    ratio = hotline["p50_ms"] / receipt.p50_ms
    by_round = [h / s for h, s in zip(hotline["round_p50_ms"], synapse_round_p50s, strict=True)]
    print(
        f"\nhotline p50 / Synapse receipt p50 = {ratio:.3f}  (target <= 0.25, and hotline p50 "
        f"< 10 ms); against Synapse's one-way arrival: {hotline['p50_ms'] / arrival.p50_ms:.3f}"
    )
    print("  round by round: " + ", ".join(f"{r:.3f}" for r in by_round))
    print(f"hotline burst {hotline['burst_per_s']:.0f}/s (target >= 400/s)")
    print(f"machine load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
