"""Referral cases: opened by a ``cyber_referral`` message, moved by signed ``case_update``s.

Who may do what (checked on both sides; a refused transition from a peer is recorded, never
applied):

    receiving side   referred      -> acknowledged | declined
                     acknowledged  -> investigating | action_taken | declined
                     investigating -> action_taken | declined
    referring side   any state but closed -> closed

Each accepted transition is one row of ``referral_events`` tied to the message that carried
it; ``referral_cases.state`` and the first times of acknowledgement, action, decline and closure
are derived from those rows in the same transaction. Times are this node's clock: when we
queued our own message, or when the peer's message was committed to our inbox.

``on_message_committed`` is the inbox's hook (called in the inbox's transaction for every
committed message); ``catch_up`` applies any referral messages the hook has not seen (a node
that ran before the hook was wired, or a crash between queuing and recording on the sending
side). Both are idempotent.

A received referral's bundle is checked there only by the cheap steps (size, depth, object count,
names, the TLP marking: ``stix.check_shape``, ``stix.check_tlp``); its case is recorded with the
problem ``PENDING`` and is not served. The OASIS validator, which may take seconds on a hostile
bundle within the limits, runs after the inbox's transaction (``validate_pending``), each bundle
outside any transaction, and its verdict is recorded in a short transaction of its own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import Connection, and_, insert, select, update

from hotline.compose.catalog import CyberReferral, RequestedAction, Tlp, validate_body
from hotline.core.card import Card, Identity
from hotline.core.encoding import to_us
from hotline.errors import ErrorCode, HotlineError, InputError, NotFoundError, ProtocolError
from hotline.link import outbox
from hotline.referrals import stix
from hotline.referrals._schema import referral_cases, referral_events
from hotline.referrals.collections import Direction, add_objects, collection_id
from hotline.referrals.messages import CaseState, CaseUpdate
from hotline.store import Store
from hotline.store.schema import messages

log = logging.getLogger(__name__)

REFERRAL_TYPE: Final = "cyber_referral"
UPDATE_TYPE: Final = CaseUpdate.msg_type
#: A referral's link priority unless the operator picks another: a person must acknowledge
#: reading it within 3 hours (the case's own response deadline is separate).
DEFAULT_PRIORITY: Final = "priority"
#: Longest response deadline a referral may set.
MAX_DEADLINE: Final = timedelta(days=366)
#: The problem of a received referral's case until the OASIS validator checked its bundle.
PENDING: Final = "stix_pending: the STIX validator has not checked the bundle yet"
#: The problem of a valid TLP:RED referral: never re-shared.
_RED: Final = "TLP:RED: not re-shared over TAXII"


class Side(StrEnum):
    REFERRER = "referrer"
    RECEIVER = "receiver"


_RECEIVER_MOVES: Final[Mapping[CaseState, frozenset[CaseState]]] = {
    CaseState.REFERRED: frozenset({CaseState.ACKNOWLEDGED, CaseState.DECLINED}),
    CaseState.ACKNOWLEDGED: frozenset(
        {CaseState.INVESTIGATING, CaseState.ACTION_TAKEN, CaseState.DECLINED}
    ),
    CaseState.INVESTIGATING: frozenset({CaseState.ACTION_TAKEN, CaseState.DECLINED}),
}
_OPEN_STATES: Final = frozenset(CaseState) - {CaseState.CLOSED}


def allowed(current: CaseState, side: Side) -> frozenset[CaseState]:
    """The states ``side`` may move a case in ``current`` to."""
    if side is Side.REFERRER:
        return frozenset({CaseState.CLOSED}) if current in _OPEN_STATES else frozenset()
    return _RECEIVER_MOVES.get(current, frozenset())


def check_transition(current: CaseState, new: CaseState, side: Side) -> None:
    """Raise ProtocolError(INVALID_TRANSITION) unless ``side`` may move ``current`` to ``new``."""
    permitted = allowed(current, side)
    if new not in permitted:
        options = ", ".join(sorted(permitted)) or "nothing (the case is settled for this side)"
        raise ProtocolError(
            f"the {side.value} cannot move a case from {current.value} to {new.value}; "
            f"allowed: {options}",
            code=ErrorCode.INVALID_TRANSITION,
            fields={"state": new.value, "current": current.value, "side": side.value},
        )


def our_side(case_direction: str) -> Side:
    return Side.REFERRER if case_direction == "out" else Side.RECEIVER


# -- views -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CaseEvent:
    state: str
    side: str
    at_us: int
    message_id: str
    note: str | None
    reason: str | None
    accepted: bool
    problem: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "side": self.side,
            "at_us": self.at_us,
            "message_id": self.message_id,
            "note": self.note,
            "reason": self.reason,
            "accepted": self.accepted,
            "problem": self.problem,
        }


@dataclass(frozen=True, slots=True)
class CaseView:
    id: str
    direction: str
    peer: str
    state: CaseState
    opened_at_us: int
    deadline_us: int
    tlp: str
    actions: list[str]
    narrative: str
    object_count: int
    acknowledged_at_us: int | None
    action_at_us: int | None
    declined_at_us: int | None
    closed_at_us: int | None
    served: bool
    problem: str | None
    events: list[CaseEvent]

    def overdue(self, now_us: int) -> bool:
        """Not acknowledged (nor closed) by its response deadline."""
        return (
            self.state is CaseState.REFERRED
            and self.acknowledged_at_us is None
            and now_us > self.deadline_us
        )

    def to_dict(self, now_us: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "direction": self.direction,
            "peer": self.peer,
            "state": self.state.value,
            "opened_at_us": self.opened_at_us,
            "deadline_us": self.deadline_us,
            "tlp": self.tlp,
            "requested_actions": self.actions,
            "narrative": self.narrative,
            "object_count": self.object_count,
            "acknowledged_at_us": self.acknowledged_at_us,
            "action_at_us": self.action_at_us,
            "declined_at_us": self.declined_at_us,
            "closed_at_us": self.closed_at_us,
            "served_over_taxii": self.served,
            "problem": self.problem,
            "events": [e.to_dict() for e in self.events],
        }
        if now_us is not None:
            out["overdue"] = self.overdue(now_us)
        return out


def _view(row: Any, events: list[CaseEvent]) -> CaseView:
    return CaseView(
        id=row.id,
        direction=row.direction,
        peer=row.peer,
        state=CaseState(row.state),
        opened_at_us=row.opened_at_us,
        deadline_us=row.deadline_us,
        tlp=row.tlp,
        actions=list(json.loads(row.actions)),
        narrative=row.narrative,
        object_count=row.object_count,
        acknowledged_at_us=row.acknowledged_at_us,
        action_at_us=row.action_at_us,
        declined_at_us=row.declined_at_us,
        closed_at_us=row.closed_at_us,
        served=bool(row.served),
        problem=row.problem,
        events=events,
    )


def _events(conn: Connection, case_id: str) -> list[CaseEvent]:
    e = referral_events.c
    rows = conn.execute(
        select(e.state, e.side, e.at_us, e.message_id, e.note, e.reason, e.accepted, e.problem)
        .where(e.case_id == case_id)
        .order_by(e.id)
    )
    return [
        CaseEvent(
            r.state, r.side, r.at_us, r.message_id, r.note, r.reason, bool(r.accepted), r.problem
        )
        for r in rows
    ]


def get_case(conn: Connection, case_id: str) -> CaseView:
    row = conn.execute(select(referral_cases).where(referral_cases.c.id == case_id)).first()
    if row is None:
        raise NotFoundError(f"no case {case_id!r}")
    return _view(row, _events(conn, case_id))


def list_cases(
    conn: Connection,
    *,
    peer: str | None = None,
    direction: str | None = None,
    since_us: int | None = None,
    limit: int | None = 200,
) -> list[CaseView]:
    c = referral_cases.c
    query = select(referral_cases)
    if peer is not None:
        query = query.where(c.peer == peer)
    if direction is not None:
        query = query.where(c.direction == direction)
    if since_us is not None:
        query = query.where(c.opened_at_us >= since_us)
    query = query.order_by(c.opened_at_us.desc())
    if limit is not None:
        query = query.limit(limit)
    return [_view(r, []) for r in conn.execute(query)]


# -- recording -------------------------------------------------------------------------------


def _record_referral(
    conn: Connection,
    *,
    direction: str,
    peer: str,
    message_id: str,
    body: Mapping[str, Any],
    at_us: int,
) -> None:
    if conn.execute(select(referral_cases.c.id).where(referral_cases.c.id == message_id)).first():
        return
    bundle = body.get("stix_bundle")
    objects_ = bundle.get("objects") if isinstance(bundle, dict) else None
    if isinstance(objects_, list) and len(objects_) > 2 * stix.MAX_BUNDLE_OBJECTS:
        # Far over the cap: refused before the catalog walks (and re-serializes) the body.
        raise InputError(
            f"the bundle has {len(objects_)} objects; the limit is {stix.MAX_BUNDLE_OBJECTS}",
            code=ErrorCode.TOO_LARGE,
        )
    model = validate_body(REFERRAL_TYPE, dict(body))
    if not isinstance(model, CyberReferral):  # pragma: no cover - validate_body's contract
        raise ProtocolError("not a cyber_referral")
    problem: str | None = None
    objects: list[dict[str, Any]] = []
    try:
        if direction == "in":
            # Only the steps whose cost is linear in the (bounded) size: the validator may
            # take seconds on a hostile bundle, and this runs in the inbox's write transaction.
            stix.check_tlp(stix.check_shape(dict(model.stix_bundle)), model.tlp)
            problem = PENDING
        else:
            checked = stix.check_bundle(dict(model.stix_bundle), model.tlp)
            objects = checked.objects
    except HotlineError as e:
        problem = _problem(e)
    if problem is None and model.tlp is Tlp.RED:
        problem = _RED
    bundle_objects = model.stix_bundle.get("objects")
    conn.execute(
        insert(referral_cases).values(
            id=message_id,
            direction=direction,
            peer=peer,
            opened_at_us=at_us,
            deadline_us=to_us(model.response_deadline),
            tlp=model.tlp.value,
            actions=json.dumps([a.value for a in model.requested_actions]),
            narrative=model.narrative,
            object_count=len(bundle_objects) if isinstance(bundle_objects, list) else 0,
            state=CaseState.REFERRED.value,
            served=int(problem is None),
            problem=problem,
        )
    )
    conn.execute(
        insert(referral_events).values(
            case_id=message_id,
            message_id=message_id,
            state=CaseState.REFERRED.value,
            side=Side.REFERRER.value,
            at_us=at_us,
            accepted=1,
        )
    )
    if problem is None:
        which = Direction.SENT if direction == "out" else Direction.RECEIVED
        add_objects(conn, collection_id(peer, which), message_id, objects, at_us)
    elif problem != PENDING:
        log.warning("referral %s from/to %s not served over TAXII: %s", message_id, peer, problem)


def _problem(e: HotlineError) -> str:
    return f"{e.code}: {e.detail} {e.fields if e.fields else ''}".strip()[:2000]


def validate_pending(store: Store, ids: Iterable[str] | None = None) -> int:
    """Run the OASIS validator on received referrals whose case is ``PENDING`` (those of ``ids``,
    or all); returns how many verdicts were recorded.

    Each bundle is validated with no transaction open, then its verdict is recorded in a short
    write transaction, only if the case is still pending (so two callers never serve a bundle
    twice): a valid one is served over TAXII (unless TLP:RED), an invalid one keeps the
    validator's findings as its problem. Nothing from a peer makes this raise.
    """
    c = referral_cases.c
    query = select(c.id, c.peer, c.opened_at_us).where(c.problem == PENDING)
    if ids is not None:
        wanted = list(ids)
        if not wanted:
            return 0
        query = query.where(c.id.in_(wanted))
    with store.read() as conn:
        waiting = list(conn.execute(query))
    recorded = 0
    for row in waiting:
        with store.read() as conn:
            text = conn.execute(select(messages.c.body).where(messages.c.id == row.id)).scalar()
        problem: str | None = None
        objects: list[dict[str, Any]] = []
        try:
            body = json.loads(text) if isinstance(text, str) else None
            if not isinstance(body, dict):
                raise InputError("the referral's message is not in the store")
            model = validate_body(REFERRAL_TYPE, body)
            if not isinstance(model, CyberReferral):  # pragma: no cover - validate_body's contract
                raise ProtocolError("not a cyber_referral")
            objects = stix.check_bundle(dict(model.stix_bundle), model.tlp).objects
            if model.tlp is Tlp.RED:
                problem = _RED
        except HotlineError as e:
            problem = _problem(e)
        with store.write() as conn:
            changed = conn.execute(
                update(referral_cases)
                .where(and_(c.id == row.id, c.problem == PENDING))
                .values(served=int(problem is None), problem=problem)
            ).rowcount
            if changed and problem is None:
                add_objects(
                    conn,
                    collection_id(row.peer, Direction.RECEIVED),
                    row.id,
                    objects,
                    row.opened_at_us,
                )
        if changed:
            recorded += 1
            if problem is not None:
                log.warning(
                    "referral %s from %s not served over TAXII: %s", row.id, row.peer, problem
                )
    return recorded


_FIRST_TIME_COLUMN: Final[Mapping[CaseState, str]] = {
    CaseState.ACTION_TAKEN: "action_at_us",
    CaseState.DECLINED: "declined_at_us",
    CaseState.CLOSED: "closed_at_us",
}


def _record_update(
    conn: Connection,
    *,
    direction: str,
    peer: str,
    message_id: str,
    body: Mapping[str, Any],
    at_us: int,
) -> None:
    e = referral_events.c
    if conn.execute(select(e.id).where(e.message_id == message_id)).first():
        return
    update_ = validate_body(UPDATE_TYPE, dict(body))
    if not isinstance(update_, CaseUpdate):  # pragma: no cover - validate_body's contract
        raise ProtocolError("not a case_update")
    row = conn.execute(select(referral_cases).where(referral_cases.c.id == update_.case_id)).first()
    problem: str | None = None
    side = Side.RECEIVER
    if row is None:
        problem = "no such case"
    elif row.peer != peer:
        problem = f"the case is with {row.peer!r}, not {peer!r}"
    else:
        ours = our_side(row.direction)
        side = ours if direction == "out" else _other(ours)
        try:
            check_transition(CaseState(row.state), update_.state, side)
        except ProtocolError as err:
            if direction == "out":
                raise
            problem = err.detail
    conn.execute(
        insert(referral_events).values(
            case_id=update_.case_id,
            message_id=message_id,
            state=update_.state.value,
            side=side.value,
            at_us=at_us,
            note=update_.note,
            reason=update_.reason,
            accepted=int(problem is None),
            problem=problem,
        )
    )
    if problem is not None:
        log.warning("case_update %s from %s refused: %s", message_id, peer, problem)
        return
    values: dict[str, Any] = {"state": update_.state.value}
    if row is not None and row.acknowledged_at_us is None and side is Side.RECEIVER:
        values["acknowledged_at_us"] = at_us
    column = _FIRST_TIME_COLUMN.get(update_.state)
    if column is not None and row is not None and getattr(row, column) is None:
        values[column] = at_us
    conn.execute(
        update(referral_cases).where(referral_cases.c.id == update_.case_id).values(**values)
    )


def _other(side: Side) -> Side:
    return Side.RECEIVER if side is Side.REFERRER else Side.REFERRER


def on_message_committed(
    conn: Connection,
    *,
    direction: str,
    peer: str,
    message_id: str,
    msg_type: str,
    body: Mapping[str, Any],
    at_us: int,
) -> None:
    """Apply a committed message to the case tables, in the caller's transaction.

    Call it for every message committed to the inbox (``direction="in"``, ``at_us`` = the
    commit time) and, optionally, to the outbox (``"out"``). Messages of other types are
    ignored; a referral or update seen before is ignored. A received body the catalog refuses
    is logged and ignored (the inbox flags it already); a received transition the sender was
    not entitled to is recorded as refused. Nothing from a peer makes this raise; only our
    own invalid transitions (``"out"``) and storage failures do.
    """
    if msg_type not in (REFERRAL_TYPE, UPDATE_TYPE):
        return
    try:
        if msg_type == REFERRAL_TYPE:
            _record_referral(
                conn,
                direction=direction,
                peer=peer,
                message_id=message_id,
                body=body,
                at_us=at_us,
            )
        else:
            _record_update(
                conn,
                direction=direction,
                peer=peer,
                message_id=message_id,
                body=body,
                at_us=at_us,
            )
    except InputError as e:
        if direction == "out":
            raise
        log.warning("%s %s from %s not applied to cases: %s", msg_type, message_id, peer, e)
        # Kept as a refused event, so that the record shows it and catch_up does not retry it.
        conn.execute(
            insert(referral_events).values(
                case_id=message_id,
                message_id=message_id,
                state=CaseState.REFERRED.value if msg_type == REFERRAL_TYPE else "invalid",
                side=Side.REFERRER.value if msg_type == REFERRAL_TYPE else Side.RECEIVER.value,
                at_us=at_us,
                accepted=0,
                problem=f"{e.code}: {e.detail}"[:2000],
            )
        )


def catch_up(conn: Connection) -> int:
    """Apply referral messages in ``messages`` that the case tables have not seen; returns how
    many were looked at. It reads the id of every referral-type message (the ``messages`` table
    has no index by type), so the node calls it once at start-up and the CLI before each
    command; the inbox hook keeps the tables current in between."""
    m = messages.c
    ids = list(
        conn.execute(
            select(m.id, m.msg_type)
            .where(and_(m.kind == "message", m.msg_type.in_((REFERRAL_TYPE, UPDATE_TYPE))))
            .order_by(m.direction, m.peer, m.seq)
        )
    )
    seen_cases = {r[0] for r in conn.execute(select(referral_cases.c.id))}
    seen_events = {r[0] for r in conn.execute(select(referral_events.c.message_id))}
    # Referrals first, so that an update found in the same pass has its case; bodies (up to a
    # few hundred KiB each) are read only for the messages not seen yet.
    unseen = [
        r.id
        for r in sorted(ids, key=lambda r: r.msg_type != REFERRAL_TYPE)
        if r.id not in seen_cases and r.id not in seen_events
    ]
    pending = [
        conn.execute(
            select(m.id, m.direction, m.peer, m.msg_type, m.body, m.noted_at_us).where(
                m.id == message_id
            )
        ).one()
        for message_id in unseen
    ]
    for r in pending:
        try:
            body = json.loads(r.body)
        except ValueError:
            continue
        if not isinstance(body, dict):
            continue
        try:
            on_message_committed(
                conn,
                direction=r.direction,
                peer=r.peer,
                message_id=r.id,
                msg_type=r.msg_type,
                body=body,
                at_us=int(r.noted_at_us),  # our clock: written, or arrived
            )
        except HotlineError as e:
            log.warning("catch-up of %s skipped: %s", r.id, e)
    return len(pending)


# -- operator actions (the CLI) --------------------------------------------------------------


def _validated(msg_type: str, body: dict[str, Any]) -> None:
    """The catalog's check, with the bad fields named in the detail a person reads."""
    try:
        validate_body(msg_type, body)
    except InputError as e:
        named = "; ".join(f"{k}: {v}" for k, v in e.fields.items())
        raise InputError(f"{e.detail} ({named})", code=e.code, fields=e.fields) from e


def referral_body(
    bundle: dict[str, Any],
    *,
    narrative: str,
    actions: list[RequestedAction],
    deadline: datetime,
    tlp: Tlp,
) -> dict[str, Any]:
    return {
        "stix_bundle": bundle,
        "narrative": narrative,
        "requested_actions": [a.value for a in actions],
        "response_deadline": deadline.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tlp": tlp.value,
    }


def prepare_referral(
    bundle_bytes: bytes,
    *,
    narrative: str,
    actions: list[RequestedAction],
    deadline: datetime,
    tlp: Tlp,
    now: datetime,
) -> dict[str, Any]:
    """Check a bundle file and the referral's fields; the body to send, or InputError.

    The bundle is marked with the TLP (``stamp_tlp``) before it is validated, so what the
    validator passed is exactly what is signed and sent.
    """
    if not actions:
        raise InputError("name at least one requested action (--request)")
    if deadline <= now:
        raise InputError("the response deadline must be in the future")
    if deadline - now > MAX_DEADLINE:
        raise InputError(f"the response deadline may be at most {MAX_DEADLINE.days} days away")
    parsed = stix.parse_bundle_bytes(bundle_bytes)
    checked = stix.check_bundle(stix.stamp_tlp(parsed, tlp), tlp)
    body = referral_body(
        checked.bundle, narrative=narrative, actions=actions, deadline=deadline, tlp=tlp
    )
    _validated(REFERRAL_TYPE, body)
    return body


def open_referral(
    store: Store,
    identity: Identity,
    peer: Card,
    body: dict[str, Any],
    *,
    now: datetime,
    ttl: timedelta,
    priority: str = DEFAULT_PRIORITY,
) -> str:
    """Queue a prepared referral to ``peer`` and open the case; returns the case id."""
    message_id = outbox.submit_message(
        store,
        identity,
        peer,
        msg_type=REFERRAL_TYPE,
        priority=priority,
        body=body,
        now=now,
        ttl=ttl,
    )
    with store.write() as conn:
        on_message_committed(
            conn,
            direction="out",
            peer=peer.name,
            message_id=message_id,
            msg_type=REFERRAL_TYPE,
            body=body,
            at_us=to_us(now),
        )
    return message_id


def update_case(
    store: Store,
    identity: Identity,
    cards: Mapping[str, Card],
    case_id: str,
    *,
    state: CaseState,
    note: str | None,
    reason: str | None,
    now: datetime,
    ttl: timedelta,
) -> str:
    """Send a signed ``case_update`` for a transition this side may make; returns its id."""
    with store.read() as conn:
        case = get_case(conn, case_id)
    check_transition(case.state, state, our_side(case.direction))
    if state is CaseState.DECLINED and not reason:
        raise InputError(
            "declining a case needs a reason (--reason)", fields={"reason": "required"}
        )
    if state is not CaseState.DECLINED and reason is not None:
        raise InputError("only a decline carries a reason; use a note", fields={"reason": "unused"})
    body: dict[str, Any] = {"case_id": case_id, "state": state.value}
    if note is not None:
        body["note"] = note
    if reason is not None:
        body["reason"] = reason
    _validated(UPDATE_TYPE, body)
    peer = cards.get(case.peer)
    if peer is None:
        raise NotFoundError(f"no peer named {case.peer!r}")
    message_id = outbox.submit_message(
        store,
        identity,
        peer,
        msg_type=UPDATE_TYPE,
        priority=DEFAULT_PRIORITY,
        body=body,
        now=now,
        ttl=ttl,
        # The receiver's first update answers the referral message on the link, which ends
        # its escalation as an unanswered message.
        in_reply_to=case_id if case.direction == "in" and len(case.events) <= 1 else None,
    )
    with store.write() as conn:
        on_message_committed(
            conn,
            direction="out",
            peer=peer.name,
            message_id=message_id,
            msg_type=UPDATE_TYPE,
            body=body,
            at_us=to_us(now),
        )
    return message_id


__all__ = [
    "DEFAULT_PRIORITY",
    "MAX_DEADLINE",
    "PENDING",
    "CaseEvent",
    "CaseView",
    "Side",
    "allowed",
    "catch_up",
    "check_transition",
    "get_case",
    "list_cases",
    "on_message_committed",
    "open_referral",
    "our_side",
    "prepare_referral",
    "referral_body",
    "update_case",
    "validate_pending",
]
