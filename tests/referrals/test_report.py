"""The accountability report: shares, percentiles and overdue cases per month and direction."""

from __future__ import annotations

import csv
import io

from hotline.referrals.cases import CaseView
from hotline.referrals.messages import CaseState
from hotline.referrals.report import HOUR_US, build_report, percentile, to_csv, to_json

DAY = 24 * HOUR_US
NOV = 1_793_520_000_000_000  # 2026-11-01T08:00:00Z
DEC = NOV + 30 * DAY


def _case(
    i: int,
    direction: str,
    opened: int,
    *,
    ack_h: float | None = None,
    action_h: float | None = None,
    declined: bool = False,
    state: CaseState = CaseState.REFERRED,
) -> CaseView:
    ack = None if ack_h is None else opened + int(ack_h * HOUR_US)
    return CaseView(
        id=f"case-{i}",
        direction=direction,
        peer="moscow",
        state=state,
        opened_at_us=opened,
        deadline_us=opened + 72 * HOUR_US,
        tlp="amber",
        actions=["takedown"],
        narrative="n",
        object_count=3,
        acknowledged_at_us=ack,
        action_at_us=None if action_h is None else opened + int(action_h * HOUR_US),
        declined_at_us=ack if declined else None,
        closed_at_us=None,
        served=True,
        problem=None,
        events=[],
    )


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 90) == 5.0
    values = [float(v) for v in range(1, 11)]
    assert percentile(values, 50) == 5.0
    assert percentile(values, 90) == 9.0
    assert percentile(values, 100) == 10.0


def test_report_by_month_and_direction() -> None:
    cases = [
        _case(1, "out", NOV, ack_h=2, action_h=30, state=CaseState.ACTION_TAKEN),
        _case(2, "out", NOV + DAY, ack_h=10, state=CaseState.INVESTIGATING),
        _case(3, "out", NOV + 2 * DAY, ack_h=100, declined=True, state=CaseState.DECLINED),
        _case(4, "out", NOV + 3 * DAY),  # never acknowledged: overdue
        _case(5, "in", NOV, ack_h=1, state=CaseState.ACKNOWLEDGED),
        _case(6, "out", DEC, ack_h=4, state=CaseState.ACKNOWLEDGED),
        _case(7, "out", DEC + DAY),  # deadline not yet passed at "now"
    ]
    now = DEC + 2 * DAY
    rows = build_report(cases, now)
    assert [(r.month, r.direction, r.referrals) for r in rows] == [
        ("2026-11", "sent", 4),
        ("2026-11", "received", 1),
        ("2026-12", "sent", 2),
    ]
    nov = rows[0]
    assert nov.acknowledged_in_time == 0.5  # cases 1 and 2 (3 was late)
    assert nov.action_taken == 0.25 and nov.declined == 0.25
    assert (nov.ack_p50_h, nov.ack_p90_h) == (10.0, 100.0)
    assert (nov.action_p50_h, nov.action_p90_h) == (30.0, 30.0)
    assert nov.overdue == ["case-4"]
    assert rows[2].overdue == [] and rows[2].action_p50_h is None

    assert to_json("moscow", rows)["months"][0]["overdue"] == ["case-4"]
    table = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert table[0]["month"] == "2026-11" and table[0]["overdue"] == "case-4"
    assert table[2]["action_p50_h"] == ""
