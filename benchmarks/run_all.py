"""`make bench`: every benchmark in turn, each printing its figures and its peer's in one run.

    .venv/bin/python benchmarks/run_all.py [NAME ...]

Names: link, transports, store, flood, chaos, transcript, audit, deconfliction, taxii,
console (default: all, in order).
Each benchmark installs and starts its own peer (Synapse, PostGIS, medallion) on 127.0.0.1.
The figures are recorded, with the command that reproduces each, in docs/benchmarks.md.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = [
    "link",
    "transports",
    "store",
    "flood",
    "chaos",
    "transcript",
    "audit",
    "deconfliction",
    "taxii",
    "console",
]


def main(argv: list[str]) -> int:
    names = argv or ORDER
    unknown = [n for n in names if n not in ORDER]
    if unknown:
        print(f"unknown benchmark(s): {unknown}; choose from {ORDER}", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        print(f"\n=== {name} " + "=" * (70 - len(name)), flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, str(HERE / f"{name}.py")])
        print(f"=== {name}: exit {code} after {time.monotonic() - started:.0f} s", flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
