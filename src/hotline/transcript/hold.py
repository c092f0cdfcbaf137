"""The append hold: no new transcript entry while this store may lack entries a peer saw.

A node's log is append-only and each head it signs is a promise about its first ``size``
entries. A store restored from a backup older than the node's last activity has lost the tail
of that log (and the sequence numbers it used), while a peer holds signed heads that cover the
tail and the statements in it. Appending anything now would sign a second history for sizes
the peer already holds: a fork, which the peer rightly calls equivocation. So:

- ``hotline restore`` puts the store **on hold** (reason ``restored``) until every peer node's
  heartbeat has shown what it holds of ours (``PeerLink.compare_with_peer``); a peer that holds
  nothing beyond the store confirms it, and once all have, the hold is lifted;
- a peer that holds a larger head of ours (signed by our key, so it cannot be made up) or
  sequence numbers we no longer have puts the store on hold for good (reason ``lost_tail``),
  with a ``log_behind`` security event naming exactly what is missing. Only a store that holds
  what the peer saw (a newer backup) lifts it.

While on hold :func:`check` refuses every append (``transcript_held``): sending, receipting,
accepting a message, acknowledging. It runs in the appending transaction, so nothing is
half-written. The node also pauses its delivery workers and leaves its own tree head out of its
heartbeats (docs/operations.md, "Restore").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, Integer, String, Table, Text, delete, insert, select
from sqlalchemy import update as sql_update
from sqlalchemy.engine import Connection

from hotline.errors import ErrorCode, StorageError
from hotline.store.prepared import Prepared
from hotline.store.schema import metadata

log = logging.getLogger("hotline.security")

RESTORED = "restored"
LOST_TAIL = "lost_tail"

append_hold = Table(
    "append_hold",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("reason", String(16), nullable=False),
    Column("since_us", BigInteger, nullable=False),
    Column("detail", Text, nullable=False),
    Column("confirmed", Text, nullable=False),
)

_ROW = 1


@dataclass(frozen=True, slots=True)
class Hold:
    reason: str  # RESTORED or LOST_TAIL
    since_us: int
    detail: str
    #: Peers whose heartbeat confirmed a restored store.
    confirmed: tuple[str, ...]


def current(conn: Connection) -> Hold | None:
    row = conn.execute(select(append_hold).where(append_hold.c.id == _ROW)).first()
    if row is None:
        return None
    return Hold(row.reason, int(row.since_us), row.detail, tuple(json.loads(row.confirmed)))


# Every append asks: prepared (store.prepared), not a statement built per call.
_HELD_DETAIL = Prepared(select(append_hold.c.detail).where(append_hold.c.id == _ROW))


def check(conn: Connection) -> None:
    """Refuse to go on (``transcript_held``) while the store is on hold."""
    held = _HELD_DETAIL.first(conn)
    if held is not None:
        raise StorageError(str(held[0]), code=ErrorCode.TRANSCRIPT_HELD)


def check_proof_size(conn: Connection, size: int) -> None:
    """A proof a peer asks for up to ``size``: while on hold, a size beyond this store's log is
    one the peer saw and the store lost; ``transcript_held`` (503: "not now", no verdict) rather
    than ``not_found``, which the peer's head check would count as a refusal to prove, and so as
    equivocation."""
    from hotline.transcript._log import size as log_size  # _log imports this module

    hold = current(conn)
    if hold is not None and size > log_size(conn):
        raise StorageError(
            f"asked for a proof up to size {size}; this store's log has {log_size(conn)} "
            f"entries and is on hold ({hold.reason}) after a restore",
            code=ErrorCode.TRANSCRIPT_HELD,
            fields={"size": size},
        )


def put_on_hold(conn: Connection, *, reason: str, detail: str, now_us: int) -> None:
    """Hold the store (``lost_tail`` replaces ``restored``, never the other way round)."""
    hold = current(conn)
    if hold is None:
        conn.execute(
            insert(append_hold).values(
                id=_ROW, reason=reason, since_us=now_us, detail=detail, confirmed="[]"
            )
        )
    elif reason == LOST_TAIL or hold.reason == RESTORED:
        conn.execute(
            sql_update(append_hold)
            .where(append_hold.c.id == _ROW)
            .values(reason=reason, since_us=now_us, detail=detail, confirmed="[]")
        )


def confirm(conn: Connection, peer: str, needed: Collection[str]) -> bool:
    """``peer`` holds nothing of ours beyond a restored store; True when that lifted the hold
    (every peer of ``needed`` has confirmed). A ``lost_tail`` hold is never lifted here."""
    hold = current(conn)
    if hold is None or hold.reason != RESTORED:
        return False
    confirmed = sorted({*hold.confirmed, peer})
    if set(needed) <= set(confirmed):
        conn.execute(delete(append_hold).where(append_hold.c.id == _ROW))
        return True
    conn.execute(
        sql_update(append_hold)
        .where(append_hold.c.id == _ROW)
        .values(confirmed=json.dumps(confirmed))
    )
    return False


def lift(conn: Connection) -> None:
    conn.execute(delete(append_hold).where(append_hold.c.id == _ROW))


@dataclass(frozen=True, slots=True)
class PeerView:
    """What a peer's heartbeat says it holds of ours, and what this store holds."""

    peer: str
    #: Our log: its size here; the largest head of it the peer holds (size, when signed),
    #: verified with our own key, or None. (A held head no larger than our log but with another
    #: root is a fork already made, not a tail to wait for: the peer's head checks call it
    #: equivocation, which is the right name for it.)
    our_size: int
    held_size: int | None
    held_time: str | None
    #: Sequence numbers towards the peer: the highest we hold; the peer's next expected.
    our_last_out: int
    peer_next_expected: int
    #: From the peer: the highest it assigned to us; the highest we hold.
    peer_last_seq: int
    our_last_in: int

    def missing(self) -> list[str]:
        """What this store lacks that the peer saw, one phrase each; empty when nothing."""
        found = []
        if self.held_size is not None and self.held_size > self.our_size:
            found.append(
                f"{self.peer} holds our signed tree head of size {self.held_size} "
                f"(signed {self.held_time}); this store's log has {self.our_size} entries: "
                f"entries {self.our_size}..{self.held_size - 1} are missing (counted from 0)"
            )
        if self.peer_next_expected - 1 > self.our_last_out:
            found.append(
                f"{self.peer} has received our sequence numbers up to "
                f"{self.peer_next_expected - 1}; this store has assigned up to "
                f"{self.our_last_out}: our messages seq {self.our_last_out + 1}.."
                f"{self.peer_next_expected - 1} to {self.peer} are missing here"
            )
        return found

    def detail(self) -> str:
        missing = self.missing()
        text = "; ".join(missing)
        if self.peer_last_seq > self.our_last_in:
            text += (
                f"; {self.peer} has sent us up to seq {self.peer_last_seq}, this store holds up "
                f"to {self.our_last_in} (those we receipted after the backup are not sent again)"
            )
        text += (
            f"; this node fetches what {self.peer} holds of the link beyond this store (its "
            "messages to us and ours to it) as verified evidence, kept apart from the "
            "transcript: hotline recovered"
        )
        return (
            f"{text}. Appending would fork the log {self.peer} holds, so this node appends "
            "nothing (no message, receipt or acknowledgement) until its store holds what the "
            "peer saw: restore a newer backup, or the store that restore kept aside "
            "(docs/operations.md, Restore)"
        )


__all__ = [
    "LOST_TAIL",
    "RESTORED",
    "Hold",
    "PeerView",
    "append_hold",
    "check",
    "check_proof_size",
    "confirm",
    "current",
    "lift",
    "put_on_hold",
]
