"""Read-only queries behind the console's pages, each bounded by a limit.

They read the link's tables directly (through the store's read engine) where the store's own
helpers would load more than a page shows: the inbox needs every message not yet acknowledged,
however old, and not the newest hundred.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, and_, case, desc, exists, func, not_, select

from hotline.compose.priority import DEFAULT_ACK_DEADLINES, Priority
from hotline.link.deadlines import deadline_for
from hotline.operators import operator_actions
from hotline.store.messages import MessageView, list_messages, views_by_ids
from hotline.store.schema import link_events, message_events, messages, security_events

#: Most unacknowledged messages the inbox lists, the most urgent first (it says how many more
#: there are; that many waiting is an emergency of its own).
MAX_PENDING: Final = 200
#: Acknowledged messages shown below the pending ones.
RECENT_ACKNOWLEDGED: Final = 30
#: Messages the outbox lists, newest first.
OUTBOX_ROWS: Final = 100
#: Security events listed on the Links page.
SECURITY_ROWS: Final = 20
#: Event codes that raise the red banner (a peer showing two histories, a lost message).
ALARM_CODES: Final = frozenset({"equivocation", "sequence_gap", "inconsistent_tree_head"})


def priority_rank(priority: str) -> int:
    try:
        return Priority(priority).rank
    except ValueError:
        return len(Priority)


def received_us(view: MessageView) -> int:
    """When this node took the message in (its own clock), else the sender's time."""
    return min((e.at_us for e in view.events), default=view.created_at_us)


#: Allowance in seconds by priority, for one peer (the node's ``deadlines_for``).
Deadlines = Callable[[str], dict[str, float]]


def _default_deadlines(peer: str) -> dict[str, float]:
    del peer
    return {p.value: d.total_seconds() for p, d in DEFAULT_ACK_DEADLINES.items()}


def ack_deadline_us(view: MessageView, deadlines: Deadlines = _default_deadlines) -> int:
    """The acknowledgement deadline, on this node's clock: from our receipt for a received
    message, from its creation for a sent one, plus the allowance agreed with the peer for the
    priority (as the link's escalation computes it)."""
    start = received_us(view) if view.direction == "in" else view.created_at_us
    allowance = deadline_for(view.priority, deadlines(view.peer))
    return start + int(allowance.total_seconds() * 1_000_000)


def acknowledged_by(view: MessageView) -> str | None:
    for e in view.events:
        if e.state == "acknowledged":
            return e.detail.removeprefix("by ") or "?"
    return None


def _not_acknowledged() -> Any:
    done = exists().where(
        and_(
            message_events.c.message_id == messages.c.id,
            message_events.c.state.in_(["acknowledged", "answered"]),
        )
    )
    return and_(messages.c.direction == "in", messages.c.kind == "message", not_(done))


#: Priority rank in SQL (FLASH first), so the most urgent are found however old they are.
_RANK = case(*[(messages.c.priority == p.value, p.rank) for p in Priority], else_=len(Priority))


def inbox_pending(
    conn: Connection, own: str, deadlines: Deadlines = _default_deadlines
) -> tuple[list[MessageView], int]:
    """Received messages not yet acknowledged, most urgent first (priority, then deadline),
    at most ``MAX_PENDING`` of them; and how many there are in all."""
    # Sort ids only (the count rides along as a window function), then read the rows shown:
    # sorting thousands of rows with their bodies costs twice as much.
    ranked = list(
        conn.execute(
            select(messages.c.id, func.count().over().label("total"))
            .where(_not_acknowledged())
            .order_by(_RANK, messages.c.noted_at_us)
            .limit(MAX_PENDING)
        )
    )
    total = ranked[0].total if ranked else 0
    views = views_by_ids(conn, [r.id for r in ranked], own)
    views.sort(key=lambda v: (priority_rank(v.priority), ack_deadline_us(v, deadlines)))
    return views, int(total or 0)


def inbox_recent_acknowledged(conn: Connection, own: str) -> list[MessageView]:
    """The received messages acknowledged last, newest acknowledgement first."""
    e = message_events.c
    ids = [
        r.message_id
        for r in conn.execute(
            select(e.message_id)
            .join(messages, messages.c.id == e.message_id)
            .where(and_(e.state == "acknowledged", messages.c.direction == "in"))
            .order_by(desc(e.id))
            .limit(RECENT_ACKNOWLEDGED)
        )
    ]
    return views_by_ids(conn, ids, own)


def outbox(conn: Connection, own: str) -> list[MessageView]:
    return list_messages(conn, own, direction="out", limit=OUTBOX_ROWS)


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    at_us: int
    code: str
    peer: str | None
    source: str | None
    detail: str

    @property
    def alarm(self) -> bool:
        return self.code in ALARM_CODES


def recent_security_events(conn: Connection) -> list[SecurityEvent]:
    rows = conn.execute(
        select(security_events).order_by(desc(security_events.c.id)).limit(SECURITY_ROWS)
    )
    return [SecurityEvent(r.at_us, r.code, r.peer, r.source, r.detail) for r in rows]


def equivocations(conn: Connection) -> int:
    """Equivocation alarms ever raised: the banner stays until someone deals with the peer."""
    count = conn.execute(
        select(func.count())
        .select_from(security_events)
        .where(security_events.c.code == "equivocation")
    ).scalar()
    return int(count or 0)


def change_marks(conn: Connection) -> tuple[int, int, int, int]:
    """Highest row ids of message, link and security events and of the operators' actions.

    Each grows with every change of its part; the live stream compares them.
    """
    msg = conn.execute(select(func.max(message_events.c.id))).scalar() or 0
    sec = conn.execute(select(func.max(security_events.c.id))).scalar() or 0
    link = conn.execute(select(func.max(link_events.c.id))).scalar() or 0
    actions = conn.execute(select(func.max(operator_actions.c.id))).scalar() or 0
    return int(msg), int(link), int(sec), int(actions)


__all__ = [
    "ALARM_CODES",
    "SecurityEvent",
    "ack_deadline_us",
    "acknowledged_by",
    "change_marks",
    "equivocations",
    "inbox_pending",
    "inbox_recent_acknowledged",
    "outbox",
    "priority_rank",
    "received_us",
    "recent_security_events",
]
