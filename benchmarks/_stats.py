"""Shared helpers for the benchmarks: latency percentiles and a plain-text table.

Samples are durations in seconds (as taken from ``time.perf_counter``); figures come out in
milliseconds, the unit every benchmark table uses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Summary", "format_table", "percentile", "print_table", "summarize"]


def percentile(samples: Sequence[float], q: float) -> float:
    """Return the ``q``-th percentile (0-100) of ``samples``, linearly interpolated.

    Matches numpy's default ("linear") method so figures agree with any notebook check.
    """
    if not samples:
        raise ValueError("percentile of an empty sample")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(slots=True, frozen=True)
class Summary:
    """Latency figures in milliseconds over ``n`` samples."""

    n: int
    mean_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


def summarize(seconds: Sequence[float]) -> Summary:
    """Summarise durations given in seconds as millisecond figures."""
    if not seconds:
        raise ValueError("cannot summarise an empty sample")
    return Summary(
        n=len(seconds),
        mean_ms=1000.0 * sum(seconds) / len(seconds),
        p50_ms=1000.0 * percentile(seconds, 50),
        p95_ms=1000.0 * percentile(seconds, 95),
        p99_ms=1000.0 * percentile(seconds, 99),
        max_ms=1000.0 * max(seconds),
    )


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Lay out ``rows`` under ``headers``: text left-aligned, numbers right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    for row in cells:
        if len(row) != len(headers):
            raise ValueError(f"row has {len(row)} cells, table has {len(headers)} columns")
    numeric = [
        all(isinstance(row[i], int | float) for row in rows) if rows else False
        for i in range(len(headers))
    ]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(list(headers)), rule, *(line(row) for row in cells)])


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print ``format_table(headers, rows)``."""
    print(format_table(headers, rows))
