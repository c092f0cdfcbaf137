"""Accountability: did the other side act on our referrals, and how fast? (and we on theirs)

For one peer, per calendar month (UTC) of the referral and per direction (``sent``: referrals
we made to the peer, ``received``: the peer's to us):

    referrals                    how many were opened
    acknowledged_in_time         share acknowledged by the receiving side before the deadline
                                 (any response of the receiving side counts: acknowledged,
                                 investigating, action taken or declined)
    action_taken                 share that reached "action taken"
    declined                     share declined
    ack_p50_h / ack_p90_h        median and 90th percentile hours to acknowledgement
    action_p50_h / action_p90_h  the same to action taken
    overdue                      ids of cases not acknowledged by their deadline and still
                                 unacknowledged now

Percentiles are nearest-rank over the cases that reached the state (none: null). Times are the
reporting node's own clock (when it sent or received each message).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from hotline.core.encoding import from_us
from hotline.referrals.cases import CaseView

HOUR_US = 3_600_000_000


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of ``values``; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(slots=True)
class MonthRow:
    month: str
    direction: str
    referrals: int = 0
    acknowledged_in_time: float | None = None
    action_taken: float | None = None
    declined: float | None = None
    ack_p50_h: float | None = None
    ack_p90_h: float | None = None
    action_p50_h: float | None = None
    action_p90_h: float | None = None
    overdue: list[str] = field(default_factory=list)


def _share(n: int, total: int) -> float | None:
    return round(n / total, 4) if total else None


def _hours(value: float | None) -> float | None:
    return None if value is None else round(value / HOUR_US, 2)


def build_report(cases: list[CaseView], now_us: int) -> list[MonthRow]:
    """Rows by (month, direction), oldest month first, "sent" before "received"."""
    groups: dict[tuple[str, str], list[CaseView]] = {}
    for case in cases:
        month = from_us(case.opened_at_us).strftime("%Y-%m")
        direction = "sent" if case.direction == "out" else "received"
        groups.setdefault((month, direction), []).append(case)
    rows: list[MonthRow] = []
    for (month, direction), group in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1] != "sent")
    ):
        n = len(group)
        ack_times = [
            float(c.acknowledged_at_us - c.opened_at_us)
            for c in group
            if c.acknowledged_at_us is not None
        ]
        action_times = [
            float(c.action_at_us - c.opened_at_us) for c in group if c.action_at_us is not None
        ]
        in_time = sum(
            1
            for c in group
            if c.acknowledged_at_us is not None and c.acknowledged_at_us <= c.deadline_us
        )
        rows.append(
            MonthRow(
                month=month,
                direction=direction,
                referrals=n,
                acknowledged_in_time=_share(in_time, n),
                action_taken=_share(sum(1 for c in group if c.action_at_us is not None), n),
                declined=_share(sum(1 for c in group if c.declined_at_us is not None), n),
                ack_p50_h=_hours(percentile(ack_times, 50)),
                ack_p90_h=_hours(percentile(ack_times, 90)),
                action_p50_h=_hours(percentile(action_times, 50)),
                action_p90_h=_hours(percentile(action_times, 90)),
                overdue=sorted(c.id for c in group if c.overdue(now_us)),
            )
        )
    return rows


def to_json(peer: str, rows: list[MonthRow]) -> dict[str, Any]:
    return {"peer": peer, "months": [asdict(r) for r in rows]}


CSV_COLUMNS = (
    "month",
    "direction",
    "referrals",
    "acknowledged_in_time",
    "action_taken",
    "declined",
    "ack_p50_h",
    "ack_p90_h",
    "action_p50_h",
    "action_p90_h",
    "overdue",
)


def to_csv(rows: list[MonthRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        d = asdict(r)
        d["overdue"] = " ".join(r.overdue)
        writer.writerow(["" if d[c] is None else d[c] for c in CSV_COLUMNS])
    return out.getvalue()


__all__ = ["CSV_COLUMNS", "MonthRow", "build_report", "percentile", "to_csv", "to_json"]
