"""The Audit page's data: our log, each peer's heads, witness cosignatures, the action log.

Read-only queries over the transcript's tables, each bounded. Export is the CLI's own export
(``hotline audit export``), run inside the node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, desc, func, select

from hotline.transcript import size_and_root
from hotline.transcript.heads import latest_own_head, peer_tree_heads
from hotline.transcript.witnessing import cosignatures

#: Peer heads listed per peer, newest first.
HEADS_PER_PEER: Final = 5
#: Witness cosignatures listed, newest first.
COSIGNATURES_SHOWN: Final = 10
CHECKED: Final = {0: "unchecked", 1: "consistent", 2: "alarm"}


@dataclass(frozen=True, slots=True)
class PeerAudit:
    peer: str
    latest: list[dict[str, Any]]
    checked_size: int | None
    checked_at_us: int | None
    alarms: int


def own_log(conn: Connection) -> dict[str, Any]:
    size, root = size_and_root(conn)
    head = latest_own_head(conn)
    return {
        "size": size,
        "root": root.hex(),
        "head_size": head.size if head else None,
        "head_time": head.time.strftime("%Y-%m-%d %H:%M:%SZ") if head else None,
    }


def peer_audit(conn: Connection, peer: str) -> PeerAudit:
    t = peer_tree_heads
    rows = conn.execute(
        select(t.c.size, t.c.root, t.c.kind, t.c.received_at_us, t.c.checked)
        .where(t.c.peer == peer)
        .order_by(desc(t.c.id))
        .limit(HEADS_PER_PEER)
    )
    latest = [
        {
            "size": int(r.size),
            "root": bytes(r.root).hex(),
            "kind": r.kind,
            "received_at_us": int(r.received_at_us),
            "checked": CHECKED.get(int(r.checked), "?"),
        }
        for r in rows
    ]
    checked = conn.execute(
        select(t.c.size, t.c.received_at_us)
        .where(t.c.peer == peer, t.c.checked == 1)
        .order_by(desc(t.c.size))
        .limit(1)
    ).first()
    alarms = conn.execute(
        select(func.count()).select_from(t).where(t.c.peer == peer, t.c.checked == 2)
    ).scalar()
    return PeerAudit(
        peer=peer,
        latest=latest,
        checked_size=int(checked.size) if checked else None,
        checked_at_us=int(checked.received_at_us) if checked else None,
        alarms=int(alarms or 0),
    )


def witness_cosignatures(conn: Connection) -> list[dict[str, Any]]:
    c = cosignatures
    rows = conn.execute(
        select(c.c.witness, c.c.size, c.c.root, c.c.at_us)
        .order_by(desc(c.c.id))
        .limit(COSIGNATURES_SHOWN)
    )
    return [
        {"witness": r.witness, "size": int(r.size), "root": bytes(r.root).hex(), "at_us": r.at_us}
        for r in rows
    ]


__all__ = ["PeerAudit", "own_log", "peer_audit", "witness_cosignatures"]
