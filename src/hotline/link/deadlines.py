"""Acknowledgement deadlines and escalation.

Every message has a deadline by which a person on the other side must acknowledge it (by
priority: FLASH 5 min, IMMEDIATE 30 min, PRIORITY 3 h, ROUTINE 24 h by default). Deadlines run on
this node's own clock (DESIGN decision 7): from our creation time for what we sent, from our
receipt time for what we received. A message we sent that is past its deadline is **escalated**:
an ``escalated`` event in its history, a security event for the operators (``ack_overdue``), and
the delivery worker is woken to try every path again; repeated every ``escalation_interval_s``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, and_, func, select

from hotline.compose.priority import DEFAULT_ACK_DEADLINES, Priority
from hotline.core.encoding import from_us
from hotline.store.messages import State, add_events, record_security_event
from hotline.store.schema import message_events, messages

#: How far back the overdue scan looks: older unacknowledged messages are history, not alarms.
LOOKBACK = timedelta(days=30)
#: Most overdue messages handled per scan (a backlog drains over several scans).
MAX_PER_SCAN = 1000


def default_deadlines() -> dict[str, float]:
    return {p.value: d.total_seconds() for p, d in DEFAULT_ACK_DEADLINES.items()}


def deadline_for(priority: str, deadlines: dict[str, float]) -> timedelta:
    seconds = deadlines.get(priority, DEFAULT_ACK_DEADLINES[Priority.ROUTINE].total_seconds())
    return timedelta(seconds=seconds)


@dataclass(frozen=True, slots=True)
class Overdue:
    id: str
    direction: str  # "out": the peer has not acknowledged; "in": we have not
    peer: str
    priority: str
    due_us: int
    overdue_s: float
    escalations: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "direction": self.direction,
            "peer": self.peer,
            "priority": self.priority,
            "due": from_us(self.due_us).isoformat(),
            "overdue_s": round(self.overdue_s, 1),
            "escalations": self.escalations,
        }


Deadlines = dict[str, float] | Callable[[str], dict[str, float]]


def _for_peer(deadlines: Deadlines, peer: str) -> dict[str, float]:
    return deadlines(peer) if callable(deadlines) else deadlines


def overdue(
    conn: Connection, now_us: int, deadlines: Deadlines, *, direction: str | None = None
) -> list[Overdue]:
    """Messages past their acknowledgement deadline, most overdue first; both directions, or
    only ``direction`` ("out" or "in").

    ``deadlines`` is a table by priority, or a function of the peer giving one (deadlines agreed
    with a particular peer)."""
    acknowledged = (
        select(message_events.c.message_id)
        .where(message_events.c.state == State.ACKNOWLEDGED.value)
        .scalar_subquery()
    )
    since = now_us - int(LOOKBACK.total_seconds() * 1e6)
    conditions = [
        messages.c.kind == "message",
        messages.c.noted_at_us >= since,
        messages.c.id.not_in(acknowledged),
    ]
    if direction is not None:
        conditions.append(messages.c.direction == direction)
    rows = conn.execute(
        select(
            messages.c.id,
            messages.c.direction,
            messages.c.peer,
            messages.c.priority,
            messages.c.noted_at_us,
        )
        .where(and_(*conditions))
        .order_by(messages.c.noted_at_us)
        .limit(MAX_PER_SCAN)
    )
    out = []
    for row in rows:
        # Our own clock: our creation time, or when the message reached our inbox; never the
        # author's claimed time, which could back-date a message out of the scan (P9).
        start = int(row.noted_at_us)
        due = start + int(
            deadline_for(row.priority, _for_peer(deadlines, row.peer)).total_seconds() * 1e6
        )
        if now_us > due:
            escalations = conn.execute(
                select(func.count()).where(
                    and_(
                        message_events.c.message_id == row.id, message_events.c.state == "escalated"
                    )
                )
            ).scalar_one()
            out.append(
                Overdue(
                    row.id,
                    row.direction,
                    row.peer,
                    row.priority,
                    due,
                    (now_us - due) / 1e6,
                    int(escalations),
                )
            )
    out.sort(key=lambda o: -o.overdue_s)
    return out


def escalate(
    conn: Connection, now_us: int, deadlines: Deadlines, interval_s: float
) -> list[Overdue]:
    """Escalate our overdue messages not escalated within ``interval_s``; return them."""
    escalated = []
    # Only what we sent escalates: received messages are not scanned (on a node that received
    # thousands, that scan held the write lock and the event loop for tens of milliseconds).
    for item in overdue(conn, now_us, deadlines, direction="out"):
        last = conn.execute(
            select(func.max(message_events.c.at_us)).where(
                and_(message_events.c.message_id == item.id, message_events.c.state == "escalated")
            )
        ).scalar()
        if last is not None and now_us - int(last) < interval_s * 1e6:
            continue
        detail = (
            f"escalation {item.escalations + 1}: not acknowledged, "
            f"{item.overdue_s:.0f}s past its {item.priority.upper()} deadline"
        )
        add_events(conn, [(item.id, State.ESCALATED, now_us, detail)])
        record_security_event(
            conn,
            at_us=now_us,
            code="ack_overdue",
            peer=item.peer,
            source=None,
            detail=f"message {item.id}: {detail}",
        )
        escalated.append(item)
    return escalated


__all__ = ["Overdue", "deadline_for", "default_deadlines", "escalate", "overdue"]
