"""The inbox: the one path by which envelopes from any transport enter a node.

``receive`` opens each envelope (the stateless checks of ``hotline.core.envelope``), then makes
the stateful ones (replay, sequence), commits what it accepts, and only then returns signed
DELIVERED receipts (DESIGN decision 4). A duplicate gets the receipt it got the first time and is
never delivered twice (decision 5). A rejected envelope leaves only a security event behind.
"""

from __future__ import annotations

import json
import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Connection, and_, bindparam, func, null, select, union_all

from hotline import transcript
from hotline.compose import check_incoming, validate_body
from hotline.core.card import Card, Identity
from hotline.core.encoding import b64decode, from_us, parse_time, to_us
from hotline.core.envelope import (
    Kind,
    MessagePayload,
    Opened,
    ReceiptItem,
    ReceiptKind,
    ReceiptPayload,
    new_id,
    open_envelope,
    read_header,
    seal,
    sha256_hex,
    sign_receipt,
)
from hotline.core.keyevents import KeyStanding, check_key_use
from hotline.core.keys import SigningPublicKey, peek_statement
from hotline.core.merkle import MAX_TREE_SIZE
from hotline.core.treehead import TreeHead, verify_tree_head
from hotline.errors import ErrorCode, HotlineError, ProtocolError, VerificationError, WireError
from hotline.link import keyring
from hotline.referrals.cases import REFERRAL_TYPE, UPDATE_TYPE, on_message_committed
from hotline.store import Store
from hotline.store.messages import (
    MAX_SEQUENCE_JUMP,
    State,
    add_events,
    apply_inbound_seqs,
    dequeue,
    expired_among,
    insert_messages,
    message_state,
    next_expected_seq,
    note_inbound_seq,
    receipt_exists,
    record_security_event,
    store_receipt,
)
from hotline.store.prepared import InList, Prepared, savepoint
from hotline.store.schema import messages, receipt_items, receipts
from hotline.transcript.heads import record_peer_head

log = logging.getLogger(__name__)

_HEX_ROOT = re.compile(r"[0-9a-f]{64}")


# The statements of the inbox's hot path, prepared once (hotline.store.prepared).
_BY_ID = Prepared(
    select(messages.c.direction, messages.c.peer, messages.c.signed_hash).where(
        messages.c.id == bindparam("id")
    )
)
_BY_SEQ = Prepared(
    select(messages.c.id).where(
        and_(
            messages.c.direction == "in",
            messages.c.peer == bindparam("peer"),
            messages.c.seq == bindparam("seq"),
        )
    )
)
_OUR_MESSAGE_TO = Prepared(
    select(messages.c.peer).where(
        and_(messages.c.id == bindparam("id"), messages.c.direction == "out")
    )
)
_SENT_BY_IDS = InList(
    lambda ids: select(
        messages.c.id,
        messages.c.peer,
        messages.c.direction,
        messages.c.seq,
        messages.c.signed_hash,
        messages.c.envelope,
    ).where(messages.c.id.in_(ids))
)


@dataclass(slots=True)
class Outcome:
    """What happened to one envelope of a batch (transport-level information, unsigned)."""

    id: str | None
    status: str  # accepted | duplicate | receipt | rejected
    code: str | None = None
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "status": self.status}
        if self.code is not None:
            out["code"] = self.code
            out["detail"] = self.detail
        return out


@dataclass(slots=True)
class Received:
    outcomes: list[Outcome] = field(default_factory=list)
    #: Sealed receipt envelopes to return to each sender.
    receipts: dict[str, list[bytes]] = field(default_factory=dict)
    #: Ids of messages newly committed to the inbox (for live notifications).
    delivered_ids: list[str] = field(default_factory=list)
    #: Ids of our own messages whose state changed (delivered, acknowledged, answered).
    updated_ids: list[str] = field(default_factory=list)
    #: The state of each of those as this batch commits it (a long-poll waiting for one of
    #: them takes it from here instead of reading the store again).
    states: dict[str, State] = field(default_factory=dict)
    #: Newly committed activity notifications (deconfliction assesses them).
    activity_ids: list[str] = field(default_factory=list)
    #: For each sender in the batch, the lowest sequence number not yet received from it.
    next_expected: dict[str, int] = field(default_factory=dict)
    #: Peers whose keys changed (a rotation or revocation was accepted): reload their cards.
    key_changes: list[str] = field(default_factory=list)
    #: Senders of the envelopes that opened (decrypted with our key, signed by the sender the
    #: header names), accepted or not: what a per-peer rate limit may charge them for.
    authenticated: set[str] = field(default_factory=set)
    #: Newly committed cyber referrals: their STIX bundles wait for the validator, which runs
    #: after this transaction (``hotline.referrals.cases.validate_pending``).
    referral_ids: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Batch:
    """What one call of ``receive`` accumulates while it opens envelopes one by one."""

    result: Received
    #: Transcript entries of accepted envelopes, in order; appended once, before receipts.
    entries: list[transcript.NewEntry] = field(default_factory=list)
    #: Per sender: receipt items (without leaf index yet) and their entry's position.
    items: dict[str, list[tuple[ReceiptItem, int]]] = field(default_factory=dict)
    #: Per sender: receipts signed earlier, to send again for duplicates.
    old_receipts: dict[str, dict[str, bytes]] = field(default_factory=dict)
    #: Per sender: its keys by key id with their standing (key history), read once per batch
    #: and again after one of its key events.
    keys: dict[str, dict[bytes, tuple[SigningPublicKey, KeyStanding]]] = field(default_factory=dict)

    def peer_keys(
        self, conn: Connection, peer: Card
    ) -> dict[bytes, tuple[SigningPublicKey, KeyStanding]]:
        if peer.name not in self.keys:
            self.keys[peer.name] = keyring.peer_keys(conn, peer)
        return self.keys[peer.name]


def receive(
    store: Store,
    identity: Identity,
    peers: Mapping[str, Card],
    envelopes: list[bytes],
    *,
    now: datetime,
    source: str,
    also: Callable[[Connection], None] | None = None,
) -> Received:
    """Open, check and commit a batch of envelopes; return outcomes and receipts to send back.

    Each envelope is accepted or rejected whole: a rejected one leaves only its security event.
    Plain messages are checked against the store a group at a time and written together, once
    every check has passed; other envelopes run alone in a savepoint. Accepted envelopes go to
    the transcript before the DELIVERED receipt is signed, and the receipt names each message's
    leaf index and the tree that includes it.
    ``also`` runs inside the same write transaction (the delivery worker records its attempt
    there, so that a reply costs one commit).
    """
    batch = _Batch(Received())

    def sender_key(name: str) -> SigningPublicKey | None:
        return peers[name].signing_key if name in peers else None

    now_us = to_us(now)
    with store.write() as conn:

        def other_keys(name: str) -> dict[bytes, SigningPublicKey]:
            return {k: v[0] for k, v in batch.peer_keys(conn, peers[name]).items()}

        if also is not None:
            also(conn)
        # Plain messages are decided a group at a time (_accept_group); anything else (receipts,
        # key events, case messages) runs alone in a savepoint, after the group before it is
        # written, so that it sees the store as if every envelope had run alone, in order.
        group: list[_Plain | tuple[bytes, Exception]] = []
        for data in envelopes:
            try:
                opened = open_envelope(identity, data, sender_key, other_keys=other_keys)
                batch.result.authenticated.add(opened.header.sender)
                plain = _as_plain(conn, peers, data, opened, now_us, batch)
            except Exception as e:
                group.append((data, e))  # refused in its turn, with the group
                continue
            if plain is not None:
                group.append(plain)
                if len(group) >= _GROUP_MAX:
                    _accept_group(conn, peers, group, now_us, source, batch)
                    group = []
                continue
            _accept_group(conn, peers, group, now_us, source, batch)
            group = []
            try:
                with savepoint(conn):
                    _accept_one(conn, peers, opened, now_us, batch)
            except Exception as e:
                _reject(conn, data, e, now_us, source, batch.result)
        _accept_group(conn, peers, group, now_us, source, batch)
        appended = transcript.append(conn, batch.entries) if batch.entries else None
        last = appended  # each receipt's entry follows, read from no store again
        for sender, pending in batch.items.items():
            batch.result.next_expected[sender] = next_expected_seq(conn, sender)
            if appended is None:  # cannot happen: every receipt item has an entry
                raise ProtocolError("receipt items without transcript entries")
            items = [
                msgspec.structs.replace(item, leaf_index=appended.first_index + position)
                for item, position in pending
            ]
            receipt_id = new_id(now)
            statement = sign_receipt(
                identity,
                to=sender,
                receipt_id=receipt_id,
                created=now,
                kind=ReceiptKind.DELIVERED,
                items=items,
                tree_size=appended.size,
                tree_root=appended.root,
            )
            store_receipt(
                conn,
                receipt_id=receipt_id,
                direction="out",
                peer=sender,
                kind=ReceiptKind.DELIVERED.value,
                signed=statement,
                at_us=now_us,
                message_ids=[i.id for i in items],
            )
            last = transcript.append(
                conn, [transcript.NewEntry(statement, "receipt.out", receipt_id)], after=last
            )
            batch.old_receipts.setdefault(sender, {})[receipt_id] = statement
        for message_id in dict.fromkeys(batch.result.updated_ids):
            state = message_state(conn, message_id)
            if state is not None:
                batch.result.states[message_id] = state
        for sender, statements in batch.old_receipts.items():
            batch.result.receipts[sender] = [
                seal(
                    kind=Kind.RECEIPT,
                    sender=identity.name,
                    recipient=sender,
                    envelope_id=receipt_id,
                    statement=statement,
                    recipient_key=peers[sender].encryption_key,
                )
                for receipt_id, statement in statements.items()
            ]
    return batch.result


def _reject(
    conn: Connection, data: bytes, error: Exception, now_us: int, source: str, result: Received
) -> None:
    envelope_id = _envelope_id_or_none(data)
    if isinstance(error, HotlineError):
        code, detail = str(error.code), error.detail
    else:
        # A bug of ours must not turn one bad envelope into a failed batch: log it, refuse it.
        log.exception("unexpected error accepting envelope %s", envelope_id)
        code, detail = ErrorCode.INTERNAL.value, f"internal error ({error.__class__.__name__})"
    record_security_event(
        conn,
        at_us=now_us,
        code=code,
        peer=_sender_or_none(data),
        source=source,
        detail=f"envelope {envelope_id}: {detail}",
    )
    result.outcomes.append(Outcome(envelope_id, "rejected", code, detail))


def _envelope_id_or_none(data: bytes) -> str | None:
    try:
        return read_header(data).envelope_id
    except HotlineError:
        return None


def _sender_or_none(data: bytes) -> str | None:
    try:
        return read_header(data).sender
    except HotlineError:
        return None


def _accept_one(
    conn: Connection, peers: Mapping[str, Card], opened: Opened, now_us: int, batch: _Batch
) -> None:
    payload = opened.payload
    sender = opened.header.sender
    result = batch.result
    _check_signing_key(conn, peers[sender], opened, now_us, batch)
    if isinstance(payload, ReceiptPayload) and payload.kind == ReceiptKind.DELIVERED:
        _accept_delivered_receipt(conn, opened, payload, now_us, batch)
        return
    if not isinstance(payload, MessagePayload | ReceiptPayload):
        raise ProtocolError("heartbeats are not accepted on the envelope path")
    seq = payload.seq
    if seq is None:  # an ACKNOWLEDGED receipt without a sequence number is refused when opened
        raise ProtocolError("sequenced envelope without a sequence number")
    signed_hash = opened.statement.sha256

    # Replay: the same id again is a duplicate if it is the same signed content, else an attack.
    existing = _BY_ID.first(conn, {"id": payload.id})
    if existing is not None:
        if existing != ("in", sender, signed_hash):
            raise ProtocolError(
                f"id {payload.id} was already used for other content",
                code=ErrorCode.REPLAY_CONFLICT,
            )
        old = _delivered_receipt_for(conn, payload.id)
        if old is not None:
            batch.old_receipts.setdefault(sender, {})[old[0]] = old[1]
        result.outcomes.append(Outcome(payload.id, "duplicate"))
        return

    # Sequence: a number is used once per direction; a jump leaves a gap that is noticed.
    taken = _BY_SEQ.scalar(conn, {"peer": sender, "seq": seq})
    if taken is not None:
        raise ProtocolError(
            f"sequence number {seq} from {sender!r} already carried {taken}",
            code=ErrorCode.SEQUENCE_REUSED,
        )
    skipped = note_inbound_seq(conn, sender, seq, now_us)
    if skipped:
        record_security_event(
            conn,
            at_us=now_us,
            code="sequence_gap",
            peer=sender,
            source=None,
            detail=f"received seq {seq}; missing {skipped[:20]}"
            + (f" and {len(skipped) - 20} more" if len(skipped) > 20 else ""),
        )

    key_entry: transcript.NewEntry | None = None
    if isinstance(payload, MessagePayload):
        if payload.tree_head is not None:
            _record_embedded_head(
                conn, peers[sender], payload.tree_head, now_us, batch.peer_keys(conn, peers[sender])
            )
        if payload.type in keyring.KEY_EVENT_TYPES:
            key_entry = keyring.accept_peer_event(
                conn,
                peers[sender],
                carrier_key_id=opened.statement.key_id,
                msg_type=payload.type,
                body=payload.body,
                message_id=payload.id,
                now_us=now_us,
            )
            batch.keys.pop(sender, None)
            result.key_changes.append(sender)
        expires_us = to_us(parse_time(payload.expires, what="expires")) if payload.expires else None
        _insert_incoming(
            conn,
            opened,
            payload.id,
            sender,
            seq,
            Kind.MESSAGE,
            payload.type,
            payload.priority,
            payload.body,
            payload.in_reply_to,
            now_us,
            expires_us,
        )
        events: list[tuple[str, State, int, str]] = [(payload.id, State.DELIVERED, now_us, "")]
        if payload.in_reply_to is not None and _is_our_message_to(
            conn, payload.in_reply_to, sender
        ):
            events.append(
                (payload.in_reply_to, State.ANSWERED, now_us, f"answered by {payload.id}")
            )
            result.updated_ids.append(payload.in_reply_to)
        add_events(conn, events)
        result.delivered_ids.append(payload.id)
        if payload.type == "activity_notification":
            result.activity_ids.append(payload.id)
        elif payload.type == REFERRAL_TYPE:
            result.referral_ids.append(payload.id)
        if key_entry is None:
            _flag_catalog_problems(conn, payload, sender, now_us)
        # Cases follow their messages in the same transaction (cyber referrals, case updates).
        on_message_committed(
            conn,
            direction="in",
            peer=sender,
            message_id=payload.id,
            msg_type=payload.type,
            body=payload.body,
            at_us=now_us,
        )
        kind = "message.in"
    else:
        _accept_acknowledged_receipt(conn, opened, payload, seq, now_us, result)
        kind = "receipt.in"
    batch.entries.append(transcript.NewEntry(opened.statement.raw, kind, payload.id))
    batch.items.setdefault(sender, []).append(
        (
            ReceiptItem(
                id=payload.id,
                seq=seq,
                envelope_hash=opened.envelope_hash,
                signed_hash=signed_hash,
            ),
            len(batch.entries) - 1,
        )
    )
    if key_entry is not None:  # the key event's statement is a leaf of its own
        batch.entries.append(key_entry)
    result.outcomes.append(Outcome(payload.id, "accepted"))


#: Plain messages decided together: one read of the replay and sequence state per group, one
#: multi-row write per table.
_GROUP_MAX = 64


@dataclass(slots=True)
class _Plain:
    """A plain message of the batch (not a key event nor a case message: nothing it writes is
    read by a later envelope's checks but its id, sequence number and gaps), opened and checked
    for what needs no store, waiting for its group's decision."""

    data: bytes
    opened: Opened
    payload: MessagePayload
    created_us: int
    expires_us: int | None
    head: TreeHead | None
    #: A check that failed without the store: raised after the replay and sequence checks, in
    #: the order ``_accept_one`` makes them (a replayed id is a replay whatever else is wrong).
    error: Exception | None = None


def _as_plain(
    conn: Connection,
    peers: Mapping[str, Card],
    data: bytes,
    opened: Opened,
    now_us: int,
    batch: _Batch,
) -> _Plain | None:
    """``opened`` as a plain message for the group path, or None when it must run alone."""
    payload = opened.payload
    if not isinstance(payload, MessagePayload) or payload.type in _ALONE_TYPES:
        return None
    peer = peers[opened.header.sender]
    _check_signing_key(conn, peer, opened, now_us, batch)
    plain = _Plain(
        data=data, opened=opened, payload=payload, created_us=0, expires_us=None, head=None
    )
    try:
        if payload.tree_head is not None:
            plain.head = _verified_head(peer, payload.tree_head, batch.peer_keys(conn, peer))
        if payload.expires:
            plain.expires_us = to_us(parse_time(payload.expires, what="expires"))
        plain.created_us = to_us(parse_time(payload.created, what="created"))
    except Exception as e:
        plain.error = e
    return plain


#: Message types that change what later envelopes are checked against: run alone, in order.
_ALONE_TYPES = keyring.KEY_EVENT_TYPES | {REFERRAL_TYPE, UPDATE_TYPE}

_COLUMNS = (
    messages.c.id,
    messages.c.direction,
    messages.c.peer,
    messages.c.seq,
    messages.c.signed_hash,
)
_GROUP_STATE: dict[tuple[int, int], Prepared] = {}


def _bucket(n: int) -> int:
    """The next power of two: a group's lists are padded to it (repeating a value), so that a
    handful of statement forms serve every group size."""
    return 1 << max(0, n - 1).bit_length()


def _group_state_query(n_ids: int, n_seqs: int) -> Prepared:
    """One round trip for a sender's group: the rows with one of ``n_ids`` ids (replays, and the
    messages answered), the sender's received rows with one of ``n_seqs`` sequence numbers, and
    its highest received number (the row whose id is NULL)."""
    key = (n_ids, n_seqs)
    found = _GROUP_STATE.get(key)
    if found is None:
        ids: list[Any] = [bindparam(f"i{k}") for k in range(n_ids)]
        seqs: list[Any] = [bindparam(f"s{k}") for k in range(n_seqs)]
        received = and_(messages.c.direction == "in", messages.c.peer == bindparam("peer"))
        found = _GROUP_STATE[key] = Prepared(
            union_all(
                select(*_COLUMNS).where(messages.c.id.in_(ids)),
                select(*_COLUMNS).where(and_(received, messages.c.seq.in_(seqs))),
                select(null(), null(), null(), func.max(messages.c.seq), null()).where(received),
            )
        )
    return found


def _padded(prefix: str, values: list[Any]) -> dict[str, Any]:
    size = _bucket(len(values))
    return {f"{prefix}{k}": values[min(k, len(values) - 1)] for k in range(size)}


@dataclass(slots=True)
class _SenderState:
    """What the store holds for one sender of a group, read once, updated as it is decided."""

    #: id -> (direction, peer, signed_hash) of existing rows with the group's ids.
    rows: dict[str, tuple[str, str, str]]
    #: Sequence numbers from this sender already used (stored, or accepted in this group).
    taken: dict[int, str]
    highest: int
    skipped: set[int] = field(default_factory=set)
    filled: list[int] = field(default_factory=list)


def _read_group_state(conn: Connection, group: list[_Plain]) -> dict[str, _SenderState]:
    by_sender: dict[str, list[_Plain]] = {}
    for plain in group:
        by_sender.setdefault(plain.opened.header.sender, []).append(plain)
    states: dict[str, _SenderState] = {}
    for sender, items in by_sender.items():
        ids = list(
            dict.fromkeys(
                [p.payload.id for p in items]
                + [p.payload.in_reply_to for p in items if p.payload.in_reply_to is not None]
            )
        )
        seqs = list(dict.fromkeys(p.payload.seq for p in items))
        params = {"peer": sender, **_padded("i", ids), **_padded("s", seqs)}
        state = _SenderState({}, {}, 0)
        query = _group_state_query(_bucket(len(ids)), _bucket(len(seqs)))
        for row_id, direction, peer, seq, signed_hash in query.all(conn, params):
            if row_id is None:
                state.highest = int(seq or 0)
                continue
            state.rows[row_id] = (direction, peer, signed_hash)
            if direction == "in" and peer == sender:
                state.taken.setdefault(int(seq), row_id)
        states[sender] = state
    return states


_DELIVERED_FOR = InList(
    lambda ids: (
        select(receipt_items.c.message_id, receipts.c.id, receipts.c.signed)
        .join(receipts, receipt_items.c.receipt_id == receipts.c.id)
        .where(
            and_(
                receipt_items.c.message_id.in_(ids),
                receipts.c.direction == "out",
                receipts.c.kind == ReceiptKind.DELIVERED.value,
            )
        )
    )
)


def _accept_group(
    conn: Connection,
    peers: Mapping[str, Card],
    group: list[_Plain | tuple[bytes, Exception]],
    now_us: int,
    source: str,
    batch: _Batch,
) -> None:
    """Decide a group of plain messages (and refusals, in their turn) as ``_accept_one`` would
    one by one, from one read of the store, then write what was accepted in one statement per
    table. Every check that can refuse a message runs before anything of it is written, so no
    savepoint is needed: a refused message leaves only its security event."""
    if not group:
        return
    plains = [item for item in group if isinstance(item, _Plain)]
    states = _read_group_state(conn, plains) if plains else {}
    result = batch.result
    rows: list[dict[str, Any]] = []
    events: list[tuple[str, State, int, str]] = []
    accepted: dict[str, tuple[str, str, str]] = {}
    duplicates: list[tuple[str, str]] = []  # (sender, id) stored earlier: their old receipt
    heads: set[tuple[str, int, bytes]] = set()
    for item in group:
        if not isinstance(item, _Plain):
            _reject(conn, item[0], item[1], now_us, source, result)
            continue
        payload, opened = item.payload, item.opened
        sender = opened.header.sender
        state = states[sender]
        signed_hash = opened.statement.sha256
        seq = payload.seq
        try:
            existing = accepted.get(payload.id) or state.rows.get(payload.id)
            if existing is not None:
                if existing != ("in", sender, signed_hash):
                    raise ProtocolError(
                        f"id {payload.id} was already used for other content",
                        code=ErrorCode.REPLAY_CONFLICT,
                    )
                if payload.id not in accepted:
                    duplicates.append((sender, payload.id))
                result.outcomes.append(Outcome(payload.id, "duplicate"))
                continue
            taken = state.taken.get(seq)
            if taken is not None:
                raise ProtocolError(
                    f"sequence number {seq} from {sender!r} already carried {taken}",
                    code=ErrorCode.SEQUENCE_REUSED,
                )
            if seq > state.highest and seq - state.highest - 1 > MAX_SEQUENCE_JUMP:
                raise ProtocolError(
                    f"sequence number {seq} is more than {MAX_SEQUENCE_JUMP} beyond "
                    f"{state.highest}",
                    code=ErrorCode.SEQUENCE_OUT_OF_RANGE,
                )
            if item.error is not None:
                raise item.error
            # What could still fail on a peer's content (a bug of ours, threat model P15) is
            # computed here too, before anything of this message is written or counted.
            row = _incoming_row(
                opened,
                payload.id,
                sender,
                seq,
                Kind.MESSAGE,
                payload.type,
                payload.priority,
                payload.body,
                payload.in_reply_to,
                now_us,
                item.expires_us,
                item.created_us,
            )
            problems = _catalog_problems(payload, now_us)
        except Exception as e:
            _reject(conn, item.data, e, now_us, source, result)
            continue
        # Accepted: from here on nothing refuses it.
        accepted[payload.id] = ("in", sender, signed_hash)
        state.taken[seq] = payload.id
        if seq <= state.highest:
            if seq in state.skipped:
                state.skipped.discard(seq)
            else:
                state.filled.append(seq)
        else:
            skipped = list(range(state.highest + 1, seq))
            state.skipped.update(skipped)
            state.highest = seq
            if skipped:
                record_security_event(
                    conn,
                    at_us=now_us,
                    code="sequence_gap",
                    peer=sender,
                    source=None,
                    detail=f"received seq {seq}; missing {skipped[:20]}"
                    + (f" and {len(skipped) - 20} more" if len(skipped) > 20 else ""),
                )
        head = item.head
        if head is not None and (sender, head.size, head.root) not in heads:
            heads.add((sender, head.size, head.root))
            record_peer_head(
                conn,
                peer=sender,
                size=head.size,
                root=head.root,
                kind="tree-head",
                evidence=head.statement,
                now_us=now_us,
            )
        rows.append(row)
        events.append((payload.id, State.DELIVERED, now_us, ""))
        answered = payload.in_reply_to
        if answered is not None and state.rows.get(answered, ("", "", ""))[:2] == ("out", sender):
            events.append((answered, State.ANSWERED, now_us, f"answered by {payload.id}"))
            result.updated_ids.append(answered)
        result.delivered_ids.append(payload.id)
        if payload.type == "activity_notification":
            result.activity_ids.append(payload.id)
        _record_problems(conn, problems, sender, now_us)
        batch.entries.append(transcript.NewEntry(opened.statement.raw, "message.in", payload.id))
        batch.items.setdefault(sender, []).append(
            (
                ReceiptItem(
                    id=payload.id,
                    seq=seq,
                    envelope_hash=opened.envelope_hash,
                    signed_hash=signed_hash,
                ),
                len(batch.entries) - 1,
            )
        )
        result.outcomes.append(Outcome(payload.id, "accepted"))
    insert_messages(conn, rows)
    for sender, state in states.items():
        apply_inbound_seqs(conn, sender, sorted(state.skipped), state.filled, now_us)
    add_events(conn, events)
    if duplicates:
        old: dict[str, tuple[str, bytes]] = {}
        for statement, params in _DELIVERED_FOR.chunks([i for _, i in duplicates]):
            for message_id, receipt_id, signed in statement.all(conn, params):
                old.setdefault(message_id, (receipt_id, bytes(signed)))
        for sender, message_id in duplicates:
            if message_id in old:
                receipt_id, signed = old[message_id]
                batch.old_receipts.setdefault(sender, {})[receipt_id] = signed


def _check_signing_key(
    conn: Connection, peer: Card, opened: Opened, now_us: int, batch: _Batch
) -> None:
    """The key that signed this statement may still sign (docs/protocol.md §15.5): active, or
    rotated and within its overlap; never revoked (but for another revocation), nor pending."""
    keys = batch.peer_keys(conn, peer)
    found = keys.get(opened.statement.key_id)
    if found is None:  # open_envelope verified with one of these keys; this cannot happen
        raise VerificationError("signed by a key not in the history", code=ErrorCode.UNKNOWN_KEY)
    payload = opened.payload
    created = getattr(payload, "created", "")
    check_key_use(
        found[1],
        now=from_us(now_us),
        signed_at=parse_time(created, what="created") if created else from_us(now_us),
        revocation=isinstance(payload, MessagePayload) and payload.type == keyring.REVOCATION_TYPE,
    )


#: Tree heads verified recently, by the exact base64 text a message carried and the key that
#: signed it: a node signs a new head at most about once a second, so consecutive messages carry
#: the same one, and checking its two signatures again cost as much as opening the message.
_VERIFIED_HEADS: OrderedDict[tuple[str, SigningPublicKey, str], TreeHead] = OrderedDict()
_VERIFIED_HEADS_MAX = 64


def _verified_head(
    peer: Card, encoded: str, keys: Mapping[bytes, tuple[SigningPublicKey, KeyStanding]]
) -> TreeHead:
    statement = b64decode(encoded, what="tree head", limit=64 * 1024)
    signer = keys.get(peek_statement(statement)[1], (peer.signing_key, None))[0]
    key = (peer.name, signer, encoded)
    head = _VERIFIED_HEADS.get(key)
    if head is None:
        head = verify_tree_head(statement, signer, log=peer.name)
        _VERIFIED_HEADS[key] = head
        if len(_VERIFIED_HEADS) > _VERIFIED_HEADS_MAX:
            _VERIFIED_HEADS.popitem(last=False)
    return head


def _record_embedded_head(
    conn: Connection,
    peer: Card,
    encoded: str,
    now_us: int,
    keys: Mapping[bytes, tuple[SigningPublicKey, KeyStanding]],
) -> None:
    """A tree head a peer's message carries: verified (with whichever of the peer's keys signed
    it: a head signed before a rotation stays valid), kept, checked for equivocation."""
    head = _verified_head(peer, encoded, keys)
    record_peer_head(
        conn,
        peer=peer.name,
        size=head.size,
        root=head.root,
        kind="tree-head",
        evidence=head.statement,
        now_us=now_us,
    )


def _flag_catalog_problems(
    conn: Connection, payload: MessagePayload, sender: str, now_us: int
) -> None:
    """An authentic message whose body our catalog refuses is kept (it is part of the record)
    but flagged for the operators: it may come from a newer catalog, or be a probe. A valid
    notification that breaks a regime's rules (late, observers not invited) is flagged too."""
    _record_problems(conn, _catalog_problems(payload, now_us), sender, now_us)


def _catalog_problems(payload: MessagePayload, now_us: int) -> list[tuple[str, str]]:
    """What ``_flag_catalog_problems`` records, (code, detail) each, computed without writing."""
    try:
        model = validate_body(payload.type, payload.body)
    except HotlineError as e:
        detail = f"message {payload.id} ({payload.type[:64]}): {e.detail} {e.fields}"
        return [("invalid_body", detail)]
    return [
        ("rule_finding", f"message {payload.id}: {finding.text('en')}")
        for finding in check_incoming(payload.type, model, from_us(now_us))
    ]


def _record_problems(
    conn: Connection, problems: list[tuple[str, str]], sender: str, now_us: int
) -> None:
    for code, detail in problems:
        record_security_event(
            conn, at_us=now_us, code=code, peer=sender, source=None, detail=detail
        )


def _incoming_row(
    opened: Opened,
    envelope_id: str,
    sender: str,
    seq: int,
    kind: Kind,
    msg_type: str,
    priority: str,
    body: dict[str, Any],
    in_reply_to: str | None,
    now_us: int,
    expires_at_us: int | None,
    created_us: int,
) -> dict[str, Any]:
    """A received envelope's row of ``messages``."""
    return {
        "id": envelope_id,
        "direction": "in",
        "peer": sender,
        "seq": seq,
        "kind": kind.value,
        "msg_type": msg_type[:64],
        "priority": priority[:16],
        "created_at_us": created_us,
        "expires_at_us": expires_at_us,
        "in_reply_to": in_reply_to,
        "body": json.dumps(body, ensure_ascii=False),
        "signed": opened.statement.raw,
        "signed_hash": opened.statement.sha256,
        "envelope": opened.envelope,
        "author": getattr(opened.payload, "author", None),
        "released_by": getattr(opened.payload, "released_by", None),
        "notification": getattr(opened.payload, "notification", None),
        "noted_at_us": now_us,
    }


def _insert_incoming(
    conn: Connection,
    opened: Opened,
    envelope_id: str,
    sender: str,
    seq: int,
    kind: Kind,
    msg_type: str,
    priority: str,
    body: dict[str, Any],
    in_reply_to: str | None,
    now_us: int,
    expires_at_us: int | None = None,
) -> None:
    # The author's claimed time is shown, never trusted for ordering (DESIGN decision 7).
    created_us = to_us(parse_time(opened.payload.created, what="created"))
    row = _incoming_row(
        opened,
        envelope_id,
        sender,
        seq,
        kind,
        msg_type,
        priority,
        body,
        in_reply_to,
        now_us,
        expires_at_us,
        created_us,
    )
    insert_messages(conn, [row])


def _is_our_message_to(conn: Connection, message_id: str, peer: str) -> bool:
    return bool(_OUR_MESSAGE_TO.scalar(conn, {"id": message_id}) == peer)


def _delivered_receipt_for(conn: Connection, message_id: str) -> tuple[str, bytes] | None:
    row = conn.execute(
        select(receipts.c.id, receipts.c.signed)
        .join(receipt_items, receipt_items.c.receipt_id == receipts.c.id)
        .where(
            and_(
                receipt_items.c.message_id == message_id,
                receipts.c.direction == "out",
                receipts.c.kind == ReceiptKind.DELIVERED.value,
            )
        )
        .limit(1)
    ).first()
    return None if row is None else (row.id, bytes(row.signed))


def _check_items_are_ours(conn: Connection, opened: Opened, items: list[ReceiptItem]) -> list[str]:
    """Each item must name one of our messages to this peer with the exact bytes we sent."""
    sender = opened.header.sender
    ids = [i.id for i in items]
    rows = {
        r[0]: r
        for statement, params in _SENT_BY_IDS.chunks(ids)
        for r in statement.all(conn, params)
    }
    for item in items:
        row = rows.get(item.id)
        if row is None or row[2] != "out" or row[1] != sender:
            raise ProtocolError(
                f"receipt names {item.id}, which is not a message we sent to {sender!r}",
                code=ErrorCode.UNKNOWN_MESSAGE,
            )
        if (row[3], row[4]) != (item.seq, item.signed_hash) or sha256_hex(
            bytes(row[5])
        ) != item.envelope_hash:
            raise ProtocolError(
                f"receipt for {item.id} names other bytes than we sent",
                code=ErrorCode.REPLAY_CONFLICT,
            )
    return ids


def _accept_delivered_receipt(
    conn: Connection, opened: Opened, payload: ReceiptPayload, now_us: int, batch: _Batch
) -> None:
    result = batch.result
    if receipt_exists(conn, payload.id):
        result.outcomes.append(Outcome(payload.id, "duplicate"))
        return
    ids = _check_items_are_ours(conn, opened, payload.items)
    if payload.tree_size is not None and payload.tree_root is not None:
        if not _HEX_ROOT.fullmatch(payload.tree_root) or payload.tree_size > MAX_TREE_SIZE:
            raise WireError("receipt tree_root must be 64 lowercase hex; tree_size in range")
        root = bytes.fromhex(payload.tree_root)
        record_peer_head(
            conn,
            peer=opened.header.sender,
            size=payload.tree_size,
            root=root,
            kind="receipt",
            evidence=opened.statement.raw,
            now_us=now_us,
        )
    store_receipt(
        conn,
        receipt_id=payload.id,
        direction="in",
        peer=opened.header.sender,
        kind=ReceiptKind.DELIVERED.value,
        signed=opened.statement.raw,
        at_us=now_us,
        message_ids=ids,
    )
    add_events(conn, [(i, State.DELIVERED, now_us, f"receipt {payload.id}") for i in ids])
    if dequeue(conn, ids) < len(ids):
        _flag_delivered_after_expiry(conn, opened.header.sender, ids, payload.id, now_us)
    batch.entries.append(transcript.NewEntry(opened.statement.raw, "receipt.in", payload.id))
    result.updated_ids.extend(ids)
    result.outcomes.append(Outcome(payload.id, "receipt"))


def _flag_delivered_after_expiry(
    conn: Connection, peer: str, ids: list[str], receipt_id: str, now_us: int
) -> None:
    """Messages we had given up on (``expired``: not known delivered) that the peer did hold:
    the operators who were told they were lost must hear that they arrived (threat P17)."""
    for message_id in expired_among(conn, ids):
        record_security_event(
            conn,
            at_us=now_us,
            code="delivered_after_expiry",
            peer=peer,
            source=None,
            detail=f"message {message_id}, reported expired, was delivered (receipt {receipt_id})",
        )


def _accept_acknowledged_receipt(
    conn: Connection,
    opened: Opened,
    payload: ReceiptPayload,
    seq: int,
    now_us: int,
    result: Received,
) -> None:
    ids = _check_items_are_ours(conn, opened, payload.items)
    body: dict[str, Any] = {"kind": payload.kind, "acknowledges": ids[0]}
    if payload.operator is not None:
        body["operator"] = payload.operator
    if payload.lang is not None:
        body["lang"] = payload.lang
    if payload.tz is not None:
        body["tz"] = payload.tz
    if payload.text_hash is not None:
        body["text_hash"] = payload.text_hash
    _insert_incoming(
        conn,
        opened,
        payload.id,
        opened.header.sender,
        seq,
        Kind.RECEIPT,
        "receipt.acknowledged",
        "",
        body,
        ids[0],
        now_us,
    )
    store_receipt(
        conn,
        receipt_id=payload.id,
        direction="in",
        peer=opened.header.sender,
        kind=ReceiptKind.ACKNOWLEDGED.value,
        signed=opened.statement.raw,
        at_us=now_us,
        message_ids=ids,
    )
    detail = f"by {payload.operator}" if payload.operator else ""
    add_events(conn, [(ids[0], State.ACKNOWLEDGED, now_us, detail)])
    result.updated_ids.append(ids[0])


def next_expected(store: Store, peer: str) -> int:
    """The lowest sequence number from ``peer`` not yet received."""
    with store.read() as conn:
        return next_expected_seq(conn, peer)
