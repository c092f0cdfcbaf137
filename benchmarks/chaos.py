"""Chaos benchmark: a long storm over a link between two real node processes (issue 8).

    .venv/bin/python benchmarks/chaos.py [--messages 10000] [--duration 120] [--seed N]

washington and moscow each submit ``--messages`` 1-line messages to the other through the
operator API, paced over ``--duration`` seconds, while fault proxies between them drop 20% of
the exchanges (the request or the answer), duplicate 10% and hold back a copy of 10% to deliver
it after newer ones; a node is killed with SIGKILL every 30 s and restarted; an operator
acknowledges one received message in ten. Each peer's transports are the direct path (through
the proxies), then a relay (``hotline relay serve``, geneva): the direct path is cut for about
10 s every 40 s (``--cut-every``, ``--cut``), so that traffic goes through the relay, and the
relay is killed with SIGKILL about every 45 s (``--relay-kill-every``); ``--no-relay`` runs the
storm over the direct path alone. Then the faults stop and the link drains. Prints the
seed, messages lost (must be 0), duplicates delivered (0), time to drain, the delivery delay
(API call -> committed by the receiver) and every problem the harness's checks find
(tests/chaos/storm.py). ``--audit`` also runs the transcript checks (audit check, export and
verify: two proofs fetched per statement, so several minutes at this size).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

# The harness lives with the chaos tests; both use the same module.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "chaos"))
from faultproxy import Faults
from storm import Storm, StormPlan, storm_seed

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".bench" / "chaos"
STORM = Faults(drop=0.2, duplicate=0.1, reorder=0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=10_000, help="per direction")
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of submission")
    parser.add_argument("--kill-every", type=float, default=30.0)
    parser.add_argument("--retry-cap", type=float, default=2.0, help="the nodes' retry_cap_s")
    parser.add_argument("--heartbeat", type=float, default=5.0, help="heartbeat_interval_s")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--no-relay", action="store_true", help="direct path only")
    parser.add_argument("--cut-every", type=float, default=40.0, help="mean s between cuts")
    parser.add_argument("--cut", type=float, default=10.0, help="mean s a cut lasts")
    parser.add_argument("--relay-kill-every", type=float, default=45.0)
    parser.add_argument("--audit", action="store_true", help="also check the transcripts")
    args = parser.parse_args()
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    plan = StormPlan(
        seed=args.seed if args.seed is not None else storm_seed(),
        faults=STORM,
        messages=args.messages,
        duration_s=args.duration,
        kill_every_s=args.kill_every,
        kill_jitter=0.0,
        ack_one_in=10,
        batch=(1, 32),
        retry_cap_s=args.retry_cap,
        heartbeat_interval_s=args.heartbeat,
        drain_timeout_s=900.0,
        audit=args.audit,
        export_both=True,
        relay=not args.no_relay,
        relay_kill_every_s=None if args.no_relay else args.relay_kill_every,
        cut_every_s=None if args.no_relay else args.cut_every,
        cut_s=args.cut,
    )
    print(
        f"{args.messages} messages each way over {args.duration:.0f} s; drop 20%, duplicate 10%, "
        f"reorder 10%; kill -9 every {args.kill_every:.0f} s; retry cap {args.retry_cap:g} s, "
        f"heartbeat {args.heartbeat:g} s"
        + (
            "; direct path only"
            if args.no_relay
            else f"; relay geneva: direct path cut ~{args.cut:g} s every ~{args.cut_every:g} s, "
            f"relay kill -9 every ~{args.relay_kill_every:g} s"
        )
    )
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    with Storm(WORK, plan) as storm:
        report = storm.run()
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print(report.summary())
    print(
        f"\nmessages lost: {report.lost} (target 0); duplicates delivered: {report.duplicates} "
        f"(target 0); time to drain: {report.drain_s:.1f} s; worst delivery delay: "
        f"{report.worst_delay_s:.1f} s"
    )
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
