"""`make fuzz`: every fuzz target in turn, with a summary line per target.

    .venv/bin/python fuzz/run_all.py [--runs N] [NAME ...]

``--runs`` (or FUZZ_RUNS) is the number of executions per target (default 100,000; the figures
in docs/benchmarks.md are from 1,000,000). Each target seeds a fresh corpus from valid objects
made in code, and saves a crashing input under fuzz/artifacts/<name>/. The exit status is 0
only if no target crashed and none accepted a forgery.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS = [
    "batch",
    "envelope",
    "payload",
    "statement",
    "treehead",
    "keyevents",
    "card",
    "proof",
    "bundle",
    "volumes",
    "stix",
    "config",
]
#: Longest one input may take before libFuzzer calls it a hang (a crash of its own).
PER_INPUT_TIMEOUT_S = 20


def run_target(name: str, runs: int) -> dict[str, object]:
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            str(HERE / f"fuzz_{name}.py"),
            f"-runs={runs}",
            f"-timeout={PER_INPUT_TIMEOUT_S}",
        ],
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )
    out = proc.stdout + proc.stderr
    stats = dict(re.findall(r"stat::(\w+):\s+(\d+)", out))
    forgeries = out.count("Forgery: ")
    result = {
        "name": name,
        "executions": int(stats.get("number_of_executed_units", 0)),
        "seconds": time.monotonic() - started,
        "crashes": 0 if proc.returncode == 0 else (0 if forgeries else 1),
        "forgeries": 1 if forgeries else 0,
        "exit": proc.returncode,
    }
    if proc.returncode != 0:
        print(out[-4000:], file=sys.stderr)
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=int(os.environ.get("FUZZ_RUNS", "100000")))
    parser.add_argument("names", nargs="*", default=TARGETS)
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in TARGETS]
    if unknown:
        print(f"unknown target(s): {unknown}; choose from {TARGETS}", file=sys.stderr)
        return 2
    print(f"{'target':<10} {'executions':>11} {'seconds':>8} {'exec/s':>8} crashes forgeries")
    failed = False
    for name in args.names:
        r = run_target(name, args.runs)
        seconds = float(r["seconds"])  # type: ignore[arg-type]
        executions = int(r["executions"])  # type: ignore[call-overload]
        print(
            f"{name:<10} {executions:>11,} {seconds:>8.0f} {executions / max(seconds, 1e-9):>8,.0f}"
            f" {r['crashes']:>7} {r['forgeries']:>9}",
            flush=True,
        )
        failed = failed or r["exit"] != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
