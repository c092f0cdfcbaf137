"""A link's state (up, degraded, down) derived from the store's link events.

Derived from the store rather than from a running process's memory, so the CLI reports the same
thing whether or not it can reach the node, and nothing is lost on restart.

A link has one or more transports (the peer's direct endpoints, then relays); each observation
names the transport it was made over. Each transport gets its own state by the rules below, and
the link is as good as its best transport: up if any transport is up, down only when every
transport is down (or there is no good heartbeat at all for 2.5 intervals).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, desc, select

from hotline.core.encoding import from_us
from hotline.store.schema import link_events

FAILURE_KINDS = ("delivery_failed", "heartbeat_failed")
#: A link with no successful heartbeat for this many intervals is DOWN.
STALE_AFTER_INTERVALS = 2.5
DOWN_AFTER_FAILURES = 3
#: Best first: the link is reported as the best of its transports.
STATE_ORDER = ("up", "degraded", "down", "unknown")


@dataclass(frozen=True, slots=True)
class LinkReport:
    peer: str
    state: str
    last_heartbeat_us: int | None
    rtt_ms: float | None
    failures_since_ok: int
    last_error: str | None
    transport: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "peer": self.peer,
            "state": self.state,
            "last_heartbeat": (
                from_us(self.last_heartbeat_us).isoformat() if self.last_heartbeat_us else None
            ),
            "rtt_ms": self.rtt_ms,
            "failures_since_ok": self.failures_since_ok,
            "last_error": self.last_error,
        }
        if self.transport is not None:
            out["transport"] = self.transport
        return out


def _report(
    conn: Connection,
    peer: str,
    now_us: int,
    interval_s: float,
    transport: str | None,
    scope: ColumnElement[bool],
) -> LinkReport:
    last_ok = conn.execute(
        select(link_events.c.id, link_events.c.at_us, link_events.c.rtt_us)
        .where(and_(scope, link_events.c.kind == "heartbeat_ok"))
        .order_by(desc(link_events.c.id))
        .limit(1)
    ).first()
    since_id = last_ok.id if last_ok is not None else 0
    failures = list(
        conn.execute(
            select(link_events.c.detail)
            .where(
                and_(
                    scope,
                    link_events.c.kind.in_(FAILURE_KINDS),
                    link_events.c.id > since_id,
                )
            )
            .order_by(desc(link_events.c.id))
            .limit(DOWN_AFTER_FAILURES)
        )
    )
    stale = last_ok is None or now_us - last_ok.at_us > STALE_AFTER_INTERVALS * interval_s * 1e6
    if last_ok is None and not failures:
        state = "unknown"
    elif len(failures) >= DOWN_AFTER_FAILURES or stale:
        state = "down"
    elif failures:
        state = "degraded"
    else:
        state = "up"
    return LinkReport(
        peer=peer,
        state=state,
        last_heartbeat_us=None if last_ok is None else last_ok.at_us,
        rtt_ms=None if last_ok is None or last_ok.rtt_us is None else last_ok.rtt_us / 1000,
        failures_since_ok=len(failures),
        last_error=failures[0].detail if failures else None,
        transport=transport,
    )


def transport_names(endpoints: tuple[str, ...] | list[str], relays: list[str]) -> list[str]:
    """A peer's transports in the order they are used: its endpoints, then our relays."""
    return [*endpoints, *(f"relay:{name}" for name in relays)]


def transport_reports(
    conn: Connection, peer: str, transports: list[str], now_us: int, interval_s: float
) -> list[LinkReport]:
    """Each transport of the link to ``peer``, in the order given (the order they are used)."""
    return [
        _report(
            conn,
            peer,
            now_us,
            interval_s,
            name,
            and_(link_events.c.peer == peer, link_events.c.transport == name),
        )
        for name in transports
    ]


def link_report(conn: Connection, peer: str, now_us: int, interval_s: float) -> LinkReport:
    """The link to ``peer``: the best of its transports (or, for observations that name no
    transport, made before transports were recorded, all of them together)."""
    names = [
        str(row[0])
        for row in conn.execute(
            select(link_events.c.transport)
            .where(and_(link_events.c.peer == peer, link_events.c.transport.is_not(None)))
            .distinct()
        )
    ]
    whole = _report(conn, peer, now_us, interval_s, None, link_events.c.peer == peer)
    if not names:
        return whole
    best = min(
        transport_reports(conn, peer, names, now_us, interval_s),
        key=lambda r: (STATE_ORDER.index(r.state), -(r.last_heartbeat_us or 0)),
    )
    return LinkReport(
        peer=peer,
        state=best.state,
        last_heartbeat_us=whole.last_heartbeat_us,
        rtt_ms=best.rtt_ms if best.rtt_ms is not None else whole.rtt_ms,
        failures_since_ok=best.failures_since_ok,
        last_error=whole.last_error if best.state != "up" else None,
    )
