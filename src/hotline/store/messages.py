"""Reading and writing messages, their append-only events, receipts and security events.

Functions take a SQLAlchemy ``Connection`` inside a transaction the caller owns, so that a message,
its first event and its receipt commit together or not at all.
"""

from __future__ import annotations

import json
import logging
from collections import namedtuple
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, exists, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from hotline.core.encoding import from_us
from hotline.errors import ErrorCode, ProtocolError
from hotline.store.prepared import InList, Prepared, prepared_insert, savepoint
from hotline.store.schema import (
    heartbeats_seen,
    inbound_gaps,
    link_events,
    message_events,
    messages,
    outbox_queue,
    peers,
    receipt_items,
    receipts,
    security_events,
)

log = logging.getLogger("hotline.security")


class State(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    ACKNOWLEDGED = "acknowledged"
    ANSWERED = "answered"
    EXPIRED = "expired"
    ESCALATED = "escalated"  # past the acknowledgement deadline; not a state of progress


# The current state is the furthest state reached; events may be recorded out of order (an
# ACKNOWLEDGED receipt can arrive before a lost DELIVERED response is retried).
_PROGRESS = [State.QUEUED, State.SENT, State.DELIVERED, State.ACKNOWLEDGED, State.ANSWERED]


def derive_state(states: Iterable[str]) -> State:
    seen = set(states)
    reached = [s for s in _PROGRESS if s.value in seen]
    if State.EXPIRED.value in seen and not any(s.value in seen for s in _PROGRESS[2:]):
        return State.EXPIRED
    return reached[-1] if reached else State.QUEUED


@dataclass(slots=True)
class Event:
    state: str
    at_us: int
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "at": from_us(self.at_us).isoformat(), "detail": self.detail}


@dataclass(slots=True)
class MessageView:
    """A message as the CLI, API and console show it."""

    id: str
    direction: str
    peer: str
    seq: int
    kind: str
    msg_type: str
    priority: str
    created_at_us: int
    expires_at_us: int | None
    in_reply_to: str | None
    body: dict[str, Any]
    sender: str
    recipient: str
    events: list[Event] = field(default_factory=list)
    author: str | None = None
    released_by: str | None = None
    notification: str | None = None

    @property
    def state(self) -> State:
        return derive_state(e.state for e in self.events)

    @property
    def text(self) -> str:
        value = self.body.get("text")
        return value if isinstance(value, str) else json.dumps(self.body, ensure_ascii=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "direction": self.direction,
            "from": self.sender,
            "to": self.recipient,
            "peer": self.peer,
            "seq": self.seq,
            "kind": self.kind,
            "type": self.msg_type,
            "priority": self.priority,
            "state": self.state.value,
            "created": from_us(self.created_at_us).isoformat(),
            "expires": from_us(self.expires_at_us).isoformat() if self.expires_at_us else None,
            "in_reply_to": self.in_reply_to,
            "text": self.text,
            "body": self.body,
            "author": self.author,
            "released_by": self.released_by,
            "notification": self.notification,
            "events": [e.to_dict() for e in self.events],
        }


# The statements of the link's hot path, prepared once (hotline.store.prepared).
_INSERT_EVENT = prepared_insert(message_events, "message_id", "state", "at_us", "detail")
_MAX_SEQ = Prepared(
    select(func.max(messages.c.seq)).where(
        and_(messages.c.direction == bindparam("direction"), messages.c.peer == bindparam("peer"))
    )
)
_LAST_OUT = Prepared(
    select(messages.c.seq, messages.c.kind, messages.c.created_at_us)
    .where(and_(messages.c.direction == "out", messages.c.peer == bindparam("peer")))
    .order_by(messages.c.seq.desc())
    .limit(1)
)
#: The lowest number from a peer not yet received: its first gap, else one past its highest.
_NEXT_EXPECTED = Prepared(
    select(
        func.coalesce(
            select(func.min(inbound_gaps.c.seq))
            .where(inbound_gaps.c.peer == bindparam("peer"))
            .scalar_subquery(),
            select(func.max(messages.c.seq) + 1)
            .where(and_(messages.c.direction == "in", messages.c.peer == bindparam("peer")))
            .scalar_subquery(),
            1,
        )
    )
)
_DELETE_GAP = Prepared(
    delete(inbound_gaps).where(
        and_(inbound_gaps.c.peer == bindparam("peer"), inbound_gaps.c.seq == bindparam("seq"))
    )
)
_INSERT_GAP = prepared_insert(inbound_gaps, "peer", "seq", "noticed_at_us")
_ENQUEUE = prepared_insert(outbox_queue, "message_id", "peer", "seq", "expires_at_us", "attempts")
_PENDING = Prepared(
    select(
        outbox_queue.c.message_id,
        outbox_queue.c.seq,
        messages.c.envelope,
        outbox_queue.c.expires_at_us,
        outbox_queue.c.attempts,
    )
    .join(messages, messages.c.id == outbox_queue.c.message_id)
    .where(outbox_queue.c.peer == bindparam("peer"))
    .order_by(outbox_queue.c.seq)
    .limit(bindparam("limit"))
)
_COUNT_ATTEMPTS = InList(
    lambda ids: (
        update(outbox_queue)
        .where(outbox_queue.c.message_id.in_(ids))
        .values(attempts=outbox_queue.c.attempts + 1)
    )
)
_DEQUEUE = InList(lambda ids: delete(outbox_queue).where(outbox_queue.c.message_id.in_(ids)))
#: What a new row of ``messages`` gives; a column added later is simply not set here.
MESSAGE_COLUMNS = (
    "id",
    "direction",
    "peer",
    "seq",
    "kind",
    "msg_type",
    "priority",
    "created_at_us",
    "expires_at_us",
    "in_reply_to",
    "body",
    "signed",
    "signed_hash",
    "envelope",
    "author",
    "released_by",
    "notification",
    "noted_at_us",
)
_INSERT_MESSAGE = prepared_insert(messages, *MESSAGE_COLUMNS)
_INSERT_RECEIPT = prepared_insert(receipts, "id", "direction", "peer", "kind", "signed", "at_us")
_INSERT_RECEIPT_ITEM = prepared_insert(receipt_items, "receipt_id", "message_id")
_RECEIPT_EXISTS = Prepared(select(receipts.c.id).where(receipts.c.id == bindparam("id")))


def insert_messages(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """New rows of ``messages``, each with every key of ``MESSAGE_COLUMNS``, in one call."""
    _INSERT_MESSAGE.executemany(conn, rows)


def add_event(
    conn: Connection, message_id: str, state: State, at_us: int, detail: str = ""
) -> None:
    _INSERT_EVENT.execute(
        conn, {"message_id": message_id, "state": state.value, "at_us": at_us, "detail": detail}
    )


def add_events(conn: Connection, rows: Sequence[tuple[str, State, int, str]]) -> None:
    _INSERT_EVENT.executemany(
        conn,
        [{"message_id": m, "state": s.value, "at_us": t, "detail": d} for m, s, t, d in rows],
    )


def has_event(conn: Connection, message_id: str, states: Sequence[State]) -> bool:
    query = select(
        exists().where(
            and_(
                message_events.c.message_id == message_id,
                message_events.c.state.in_([s.value for s in states]),
            )
        )
    )
    return bool(conn.execute(query).scalar())


def record_security_event(
    conn: Connection, *, at_us: int, code: str, peer: str | None, source: str | None, detail: str
) -> None:
    log.warning("security event %s peer=%s source=%s: %s", code, peer, source, detail)
    conn.execute(
        insert(security_events).values(
            at_us=at_us, code=code, peer=peer, source=source, detail=detail[:2000]
        )
    )


def record_link_event(
    conn: Connection,
    *,
    peer: str,
    at_us: int,
    kind: str,
    rtt_us: int | None = None,
    detail: str = "",
    transport: str | None = None,
) -> None:
    conn.execute(
        insert(link_events).values(
            peer=peer, at_us=at_us, kind=kind, rtt_us=rtt_us, detail=detail, transport=transport
        )
    )


def next_out_seq(conn: Connection, peer: str) -> int:
    """The next sequence number towards ``peer``. Call inside a write transaction."""
    current = _MAX_SEQ.scalar(conn, {"direction": "out", "peer": peer})
    return int(current or 0) + 1


@dataclass(frozen=True, slots=True)
class LastOut:
    """What was last numbered towards a peer (a message or an ACKNOWLEDGED receipt)."""

    seq: int
    kind: str
    created_at_us: int


def last_out(conn: Connection, peer: str) -> LastOut | None:
    """The highest-numbered entry we queued for ``peer``, or None. One index lookup (the
    unique constraint on direction, peer, seq, read backwards)."""
    row = _LAST_OUT.first(conn, {"peer": peer})
    return None if row is None else LastOut(int(row[0]), row[1], int(row[2]))


def highest_in_seq(conn: Connection, peer: str) -> int:
    current = _MAX_SEQ.scalar(conn, {"direction": "in", "peer": peer})
    return int(current or 0)


#: A sequence number further than this beyond the highest received is refused: recording the
#: gap it would open must stay cheap, and no honest sender runs this far ahead.
MAX_SEQUENCE_JUMP = 10_000


def note_inbound_seq(conn: Connection, peer: str, seq: int, now_us: int) -> list[int]:
    """Account for ``seq`` arriving from ``peer``; return the sequence numbers it skipped.

    Call before inserting the message, inside the write transaction.
    """
    highest = highest_in_seq(conn, peer)
    if seq <= highest:
        _DELETE_GAP.execute(conn, {"peer": peer, "seq": seq})
        return []
    if seq - highest - 1 > MAX_SEQUENCE_JUMP:
        raise ProtocolError(
            f"sequence number {seq} is more than {MAX_SEQUENCE_JUMP} beyond {highest}",
            code=ErrorCode.SEQUENCE_OUT_OF_RANGE,
        )
    skipped = list(range(highest + 1, seq))
    _INSERT_GAP.executemany(
        conn, [{"peer": peer, "seq": s, "noticed_at_us": now_us} for s in skipped]
    )
    return skipped


def remember_heartbeat(
    conn: Connection, peer: str, heartbeat_id: str, now_us: int, keep_us: int
) -> bool:
    """Note that ``peer``'s heartbeat ``heartbeat_id`` was accepted; False if it was already (a
    replay). Ids older than ``keep_us`` are forgotten: by then the heartbeat is refused as stale."""
    conn.execute(delete(heartbeats_seen).where(heartbeats_seen.c.seen_at_us < now_us - keep_us))
    try:
        with savepoint(conn):
            conn.execute(
                insert(heartbeats_seen).values(peer=peer, id=heartbeat_id, seen_at_us=now_us)
            )
    except IntegrityError:
        return False
    return True


def apply_inbound_seqs(
    conn: Connection, peer: str, skipped: Sequence[int], filled: Sequence[int], now_us: int
) -> None:
    """What ``note_inbound_seq`` writes, for a group of envelopes decided together (the inbox's
    fast path): the numbers they skipped become gaps, the gaps they filled are closed. A number
    both skipped and filled within the group is in neither list."""
    _INSERT_GAP.executemany(
        conn, [{"peer": peer, "seq": s, "noticed_at_us": now_us} for s in skipped]
    )
    _DELETE_GAP.executemany(conn, [{"peer": peer, "seq": s} for s in filled])


def fill_gaps(conn: Connection, peer: str, seqs: Sequence[int]) -> int:
    """The peer declared ``seqs`` expired: they will never come. Return how many were open."""
    if not seqs:
        return 0
    result = conn.execute(
        delete(inbound_gaps).where(
            and_(inbound_gaps.c.peer == peer, inbound_gaps.c.seq.in_(list(seqs)))
        )
    )
    return int(result.rowcount or 0)


def missing_in_seqs(conn: Connection, peer: str, up_to: int, limit: int = 1000) -> list[int]:
    """Sequence numbers from ``peer`` at or below ``up_to`` that have not arrived."""
    gaps = [
        int(r[0])
        for r in conn.execute(
            select(inbound_gaps.c.seq)
            .where(and_(inbound_gaps.c.peer == peer, inbound_gaps.c.seq <= up_to))
            .order_by(inbound_gaps.c.seq)
            .limit(limit)
        )
    ]
    highest = highest_in_seq(conn, peer)
    beyond = range(highest + 1, min(up_to, highest + limit) + 1)
    return (gaps + list(beyond))[:limit]


def stale_gaps(conn: Connection, peer: str, noticed_before_us: int, limit: int = 100) -> list[int]:
    """Skipped sequence numbers still missing after a grace period: messages lost on the way."""
    return [
        int(r[0])
        for r in conn.execute(
            select(inbound_gaps.c.seq)
            .where(
                and_(inbound_gaps.c.peer == peer, inbound_gaps.c.noticed_at_us < noticed_before_us)
            )
            .order_by(inbound_gaps.c.seq)
            .limit(limit)
        )
    ]


def next_expected_seq(conn: Connection, peer: str) -> int:
    """The lowest sequence number from ``peer`` not yet received."""
    return int(_NEXT_EXPECTED.scalar(conn, {"peer": peer}))


def _view(row: Any, own_name: str, events: list[Event]) -> MessageView:
    sender, recipient = (own_name, row.peer) if row.direction == "out" else (row.peer, own_name)
    return MessageView(
        id=row.id,
        direction=row.direction,
        peer=row.peer,
        seq=row.seq,
        kind=row.kind,
        msg_type=row.msg_type,
        priority=row.priority,
        created_at_us=row.created_at_us,
        expires_at_us=row.expires_at_us,
        in_reply_to=row.in_reply_to,
        body=json.loads(row.body),
        sender=sender,
        recipient=recipient,
        events=events,
        author=row.author,
        released_by=row.released_by,
        notification=row.notification,
    )


_VIEW_COLUMNS = [
    messages.c.id,
    messages.c.direction,
    messages.c.peer,
    messages.c.seq,
    messages.c.kind,
    messages.c.msg_type,
    messages.c.priority,
    messages.c.created_at_us,
    messages.c.expires_at_us,
    messages.c.in_reply_to,
    messages.c.body,
    messages.c.author,
    messages.c.released_by,
    messages.c.notification,
]


def _events_for(conn: Connection, ids: list[str]) -> dict[str, list[Event]]:
    out: dict[str, list[Event]] = {i: [] for i in ids}
    for chunk_start in range(0, len(ids), 500):
        chunk = ids[chunk_start : chunk_start + 500]
        rows = conn.execute(
            select(
                message_events.c.message_id,
                message_events.c.state,
                message_events.c.at_us,
                message_events.c.detail,
            )
            .where(message_events.c.message_id.in_(chunk))
            .order_by(message_events.c.id)
        )
        for row in rows:
            out[row.message_id].append(Event(row.state, row.at_us, row.detail))
    return out


def notification_copies(conn: Connection, notification: str, own_name: str) -> list[MessageView]:
    """Every copy of a notification sent to (or received from) many peers."""
    rows = list(
        conn.execute(
            select(*_VIEW_COLUMNS)
            .where(messages.c.notification == notification)
            .order_by(messages.c.peer)
        )
    )
    events = _events_for(conn, [r.id for r in rows])
    return [_view(r, own_name, events[r.id]) for r in rows]


def views_by_ids(conn: Connection, ids: list[str], own_name: str) -> list[MessageView]:
    """The messages with ``ids``, in that order (ids not found are left out)."""
    if not ids:
        return []
    rows = {r.id: r for r in conn.execute(select(*_VIEW_COLUMNS).where(messages.c.id.in_(ids)))}
    events = _events_for(conn, [i for i in ids if i in rows])
    return [_view(rows[i], own_name, events[i]) for i in ids if i in rows]


# One message by id: what every long-poll on a message's state reads at each change.
_ViewRow = namedtuple("_ViewRow", [c.name for c in _VIEW_COLUMNS])  # type: ignore[misc]
_VIEW_BY_ID = Prepared(select(*_VIEW_COLUMNS).where(messages.c.id == bindparam("id")))
_EVENTS_OF = Prepared(
    select(message_events.c.state, message_events.c.at_us, message_events.c.detail)
    .where(message_events.c.message_id == bindparam("id"))
    .order_by(message_events.c.id)
)


_STATES_OF = Prepared(
    select(message_events.c.state).where(message_events.c.message_id == bindparam("id"))
)


def message_state(conn: Connection, message_id: str) -> State | None:
    """A message's current state from its events alone (None: no such message), without
    reading its row: what a long-poll waiting for a state needs."""
    states = [s for (s,) in _STATES_OF.all(conn, {"id": message_id})]
    return derive_state(states) if states else None


def get_message(conn: Connection, message_id: str, own_name: str) -> MessageView | None:
    row = _VIEW_BY_ID.first(conn, {"id": message_id})
    if row is None:
        return None
    events = [Event(s, int(t), d) for s, t, d in _EVENTS_OF.all(conn, {"id": message_id})]
    return _view(_ViewRow(*row), own_name, events)


def list_messages(
    conn: Connection,
    own_name: str,
    *,
    direction: str,
    peer: str | None = None,
    kind: str | None = "message",
    limit: int = 100,
) -> list[MessageView]:
    query = select(*_VIEW_COLUMNS).where(messages.c.direction == direction)
    if peer is not None:
        query = query.where(messages.c.peer == peer)
    if kind is not None:
        query = query.where(messages.c.kind == kind)
    # Newest first on our clock (arrival for received messages): a peer's claimed time cannot
    # keep a message on top or bury it (threat model P9).
    order = (messages.c.noted_at_us.desc(), messages.c.id.desc())
    rows = list(conn.execute(query.order_by(*order).limit(limit)))
    events = _events_for(conn, [r.id for r in rows])
    return [_view(r, own_name, events[r.id]) for r in rows]


@dataclass(slots=True, frozen=True)
class Outgoing:
    id: str
    seq: int
    envelope: bytes
    expires_at_us: int | None
    attempts: int


def enqueue(
    conn: Connection, *, message_id: str, peer: str, seq: int, expires_at_us: int | None
) -> None:
    enqueue_many(
        conn,
        [
            {
                "message_id": message_id,
                "peer": peer,
                "seq": seq,
                "expires_at_us": expires_at_us,
                "attempts": 0,
            }
        ],
    )


def enqueue_many(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Rows of ``outbox_queue`` (message_id, peer, seq, expires_at_us, attempts) in one call."""
    _ENQUEUE.executemany(conn, rows)


def pending_outgoing(conn: Connection, peer: str, limit: int) -> list[Outgoing]:
    """Envelopes towards ``peer`` still waiting for a DELIVERED receipt, lowest sequence first."""
    rows = _PENDING.all(conn, {"peer": peer, "limit": limit})
    return [Outgoing(r[0], int(r[1]), bytes(r[2]), r[3], int(r[4])) for r in rows]


def count_attempts(conn: Connection, message_ids: Sequence[str]) -> None:
    for statement, params in _COUNT_ATTEMPTS.chunks(message_ids):
        statement.execute(conn, params)


def dequeue(conn: Connection, message_ids: Sequence[str]) -> int:
    """Take envelopes off the delivery queue (receipted or expired); return how many were on it."""
    return sum(
        statement.execute(conn, params) for statement, params in _DEQUEUE.chunks(message_ids)
    )


def expired_among(conn: Connection, message_ids: Sequence[str]) -> list[str]:
    """Those of ``message_ids`` (ours) that expired at some point (given up on)."""
    return [
        str(r[0])
        for r in conn.execute(
            select(message_events.c.message_id)
            .where(
                and_(
                    message_events.c.message_id.in_(list(message_ids)),
                    message_events.c.state == State.EXPIRED.value,
                )
            )
            .order_by(message_events.c.message_id)
        )
    ]


def delivered_receipts_for_seqs(
    conn: Connection, peer: str, seqs: Sequence[int], limit: int
) -> dict[str, bytes]:
    """Our signed DELIVERED receipts for what ``peer`` sent us under ``seqs`` (receipt id ->
    statement): what to send back when the peer declares expired something we hold."""
    if not seqs:
        return {}
    rows = conn.execute(
        select(receipts.c.id, receipts.c.signed)
        .join(receipt_items, receipt_items.c.receipt_id == receipts.c.id)
        .join(messages, messages.c.id == receipt_items.c.message_id)
        .where(
            and_(
                messages.c.direction == "in",
                messages.c.peer == peer,
                messages.c.seq.in_(list(seqs)),
                receipts.c.direction == "out",
                receipts.c.kind == "delivered",
            )
        )
        .order_by(messages.c.seq)
        .limit(limit)
    )
    return {str(r.id): bytes(r.signed) for r in rows}


def expired_out_seqs(
    conn: Connection,
    peer: str,
    limit: int,
    *,
    above: int | None = None,
    below: int | None = None,
    expired_since_us: int | None = None,
) -> list[int]:
    """Our sequence numbers to ``peer`` that expired and were not delivered after all (a
    DELIVERED receipt the peer sent back late, protocol §9.3, ends the listing), ascending:
    from ``above``, under ``below``, expired at or after ``expired_since_us``."""
    later = message_events.alias("later")
    delivered_after_all = exists(
        select(later.c.message_id).where(
            and_(
                later.c.message_id == messages.c.id,
                later.c.state.in_([s.value for s in _PROGRESS[2:]]),
            )
        )
    )
    conditions = [
        messages.c.direction == "out",
        messages.c.peer == peer,
        message_events.c.state == State.EXPIRED.value,
        ~delivered_after_all,
    ]
    if above is not None:
        conditions.append(messages.c.seq >= above)
    if below is not None:
        conditions.append(messages.c.seq < below)
    if expired_since_us is not None:
        conditions.append(message_events.c.at_us >= expired_since_us)
    rows = conn.execute(
        select(messages.c.seq)
        .join(message_events, message_events.c.message_id == messages.c.id)
        .where(and_(*conditions))
        .order_by(messages.c.seq)
        .limit(limit)
    )
    return [int(r[0]) for r in rows]


def receipt_covering(conn: Connection, message_id: str, direction: str, kind: str) -> bytes | None:
    """The signed receipt of ``kind`` that covers ``message_id``, if any."""
    row = conn.execute(
        select(receipts.c.signed)
        .join(receipt_items, receipt_items.c.receipt_id == receipts.c.id)
        .where(
            and_(
                receipt_items.c.message_id == message_id,
                receipts.c.direction == direction,
                receipts.c.kind == kind,
            )
        )
        .limit(1)
    ).first()
    return None if row is None else bytes(row[0])


def store_receipt(
    conn: Connection,
    *,
    receipt_id: str,
    direction: str,
    peer: str,
    kind: str,
    signed: bytes,
    at_us: int,
    message_ids: Sequence[str],
) -> None:
    _INSERT_RECEIPT.execute(
        conn,
        {
            "id": receipt_id,
            "direction": direction,
            "peer": peer,
            "kind": kind,
            "signed": signed,
            "at_us": at_us,
        },
    )
    _INSERT_RECEIPT_ITEM.executemany(
        conn, [{"receipt_id": receipt_id, "message_id": m} for m in message_ids]
    )


def receipt_exists(conn: Connection, receipt_id: str) -> bool:
    return _RECEIPT_EXISTS.first(conn, {"id": receipt_id}) is not None


def peer_names(conn: Connection) -> list[str]:
    return [r[0] for r in conn.execute(select(peers.c.name).order_by(peers.c.name))]


def acknowledgement_of(conn: Connection, message_id: str) -> dict[str, Any] | None:
    """The recorded body of the ACKNOWLEDGED receipt for ``message_id`` (ours or the peer's)."""
    row = conn.execute(
        select(messages.c.body)
        .join(receipts, receipts.c.id == messages.c.id)
        .join(receipt_items, receipt_items.c.receipt_id == receipts.c.id)
        .where(and_(receipt_items.c.message_id == message_id, receipts.c.kind == "acknowledged"))
        .limit(1)
    ).first()
    if row is None:
        return None
    body: dict[str, Any] = json.loads(row.body)
    return body
