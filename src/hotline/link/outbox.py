"""The outbox: a message is signed, sealed and committed to disk before anyone is told "queued".

Every outgoing envelope that needs a DELIVERED receipt (messages and ACKNOWLEDGED receipts) is
sequenced per direction and goes through ``submit_envelope``; the delivery worker only ever sends
what this module committed.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from hotline import transcript
from hotline.compose import body_to_json, validate_body
from hotline.core.card import Card, Identity
from hotline.core.encoding import encode_json, to_us
from hotline.core.envelope import (
    Kind,
    ReceiptItem,
    ReceiptKind,
    message_payload,
    new_id,
    seal,
    sha256_hex,
    sign_receipt,
)
from hotline.core.keys import Purpose
from hotline.core.treehead import TreeHead
from hotline.errors import ErrorCode, InputError, NotFoundError, ProtocolError
from hotline.store import Store
from hotline.store.messages import (
    LastOut,
    State,
    add_event,
    add_events,
    enqueue_many,
    has_event,
    insert_messages,
    last_out,
    next_out_seq,
    store_receipt,
)
from hotline.store.schema import messages
from hotline.transcript.heads import current_own_head

#: A message's body must stay well inside the envelope limit once signed and sealed.
MAX_BODY_BYTES = 256 * 1024


def _outgoing_row(
    *,
    message_id: str,
    peer: str,
    seq: int,
    kind: Kind,
    msg_type: str,
    priority: str,
    created_at_us: int,
    expires_at_us: int | None,
    in_reply_to: str | None,
    body: dict[str, Any],
    statement: bytes,
    envelope: bytes,
    author: str | None = None,
    released_by: str | None = None,
    notification: str | None = None,
) -> dict[str, Any]:
    return {
        "id": message_id,
        "direction": "out",
        "peer": peer,
        "seq": seq,
        "kind": kind.value,
        "msg_type": msg_type,
        "priority": priority,
        "created_at_us": created_at_us,
        "expires_at_us": expires_at_us,
        "in_reply_to": in_reply_to,
        "body": json.dumps(body, ensure_ascii=False),
        "signed": statement,
        "signed_hash": sha256_hex(statement),
        "envelope": envelope,
        "author": author,
        "released_by": released_by,
        "notification": notification,
        # We wrote it: our clock, and the author's, are the same.
        "noted_at_us": created_at_us,
    }


@dataclass(slots=True)
class _Queued:
    """What one write transaction queues: rows written together at its end (one statement per
    table, whatever the number of messages)."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    events: list[tuple[str, State, int, str]] = field(default_factory=list)
    queue: list[dict[str, Any]] = field(default_factory=list)
    #: The next sequence number towards each peer, read once per transaction.
    next_seq: dict[str, int] = field(default_factory=dict)
    #: What was numbered towards each peer before this transaction, read with ``next_seq``.
    last_before: dict[str, LastOut | None] = field(default_factory=dict)
    #: Peers for which this transaction has decided whether a message carries our tree head.
    head_decided: set[str] = field(default_factory=set)

    def seq_for(self, conn: Connection, peer: str) -> int:
        if peer not in self.next_seq:
            last = last_out(conn, peer)
            self.last_before[peer] = last
            self.next_seq[peer] = 1 if last is None else last.seq + 1
        seq = self.next_seq[peer]
        self.next_seq[peer] = seq + 1
        return seq

    def head_for(self, peer: str, head: TreeHead, now: datetime) -> bytes | None:
        """The tree head the next message to ``peer`` carries (after ``seq_for``): ``head``
        in the first message created after it was signed, none in the others (the peer has it;
        docs/protocol.md §4.1). When unsure (the last entry towards the peer is a receipt,
        which carries no head), the message carries it."""
        if peer in self.head_decided:
            return None
        self.head_decided.add(peer)
        last = self.last_before.get(peer)
        if (
            head.time == now  # signed in this transaction: new to every peer
            or last is None
            or last.kind != Kind.MESSAGE
            or last.created_at_us < to_us(head.time)
        ):
            return head.statement
        return None

    def add(self, row: dict[str, Any]) -> None:
        self.messages.append(row)
        self.events.append((row["id"], State.QUEUED, row["created_at_us"], ""))
        self.queue.append(
            {
                "message_id": row["id"],
                "peer": row["peer"],
                "seq": row["seq"],
                "expires_at_us": row["expires_at_us"],
                "attempts": 0,
            }
        )

    def write(self, conn: Connection) -> None:
        insert_messages(conn, self.messages)
        add_events(conn, self.events)
        enqueue_many(conn, self.queue)


@dataclass(frozen=True, slots=True)
class Draft:
    """A message to queue: what the sender chose, before it is numbered, signed and sealed."""

    peer: Card
    msg_type: str
    priority: str
    body: dict[str, Any]
    ttl: timedelta
    in_reply_to: str | None = None
    author: str | None = None
    released_by: str | None = None
    notification: str | None = None  # one id for the copies of a notification to many peers
    #: A key event (docs/protocol.md §15): not a catalog type, so not validated by the catalog.
    key_event: bool = False


def checked_body(msg_type: str, body: dict[str, Any]) -> dict[str, Any]:
    """The catalog's canonical form of ``body``; unknown types and invalid fields are refused
    here, before anything is signed or sealed."""
    if len(encode_json(body)) > MAX_BODY_BYTES:
        raise InputError(f"message body over {MAX_BODY_BYTES} bytes", code=ErrorCode.TOO_LARGE)
    return body_to_json(validate_body(msg_type, body))


@dataclass(frozen=True, slots=True)
class _Unsigned:
    """A message numbered and laid out, waiting for its signature."""

    draft: Draft
    message_id: str
    seq: int
    expires: datetime
    body: dict[str, Any]
    payload: bytes


def _prepare(
    conn: Connection,
    identity: Identity,
    draft: Draft,
    now: datetime,
    head: TreeHead,
    queued: _Queued,
) -> _Unsigned:
    body = draft.body if draft.key_event else checked_body(draft.msg_type, draft.body)
    if draft.msg_type == "response" and body.get("in_reply_to") != draft.in_reply_to:
        raise InputError(
            "a response names the message it answers in its body and envelope alike",
            fields={"in_reply_to": "must equal the answered message id"},
        )
    peer = draft.peer
    message_id = new_id(now)
    expires = now + draft.ttl
    if draft.in_reply_to is not None:
        _check_answerable(conn, draft.in_reply_to, peer.name)
    seq = queued.seq_for(conn, peer.name)
    tree_head = queued.head_for(peer.name, head, now)
    payload = message_payload(
        identity,
        to=peer.name,
        message_id=message_id,
        seq=seq,
        created=now,
        msg_type=draft.msg_type,
        priority=draft.priority,
        body=body,
        expires=expires,
        in_reply_to=draft.in_reply_to,
        tree_head=tree_head,
        author=draft.author,
        released_by=draft.released_by,
        notification=draft.notification,
    )
    return _Unsigned(draft, message_id, seq, expires, body, payload)


#: ML-DSA signing releases the GIL (pyca/cryptography): a batch of messages is signed on two
#: threads, the machine's two cores, while the write transaction waits. One message is signed
#: inline (a thread hop would only add to its latency).
_SIGNERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="hotline-sign")


def _sign_all(identity: Identity, unsigned: list[_Unsigned]) -> list[bytes]:
    def sign(item: _Unsigned) -> bytes:
        return identity.signing.sign(Purpose.MESSAGE, item.payload)

    if len(unsigned) < 2:
        return [sign(item) for item in unsigned]
    return list(_SIGNERS.map(sign, unsigned))


def _finish(
    identity: Identity,
    item: _Unsigned,
    statement: bytes,
    now: datetime,
    entries: list[transcript.NewEntry],
    queued: _Queued,
) -> str:
    draft, message_id, peer = item.draft, item.message_id, item.draft.peer
    entries.append(transcript.NewEntry(statement, "message.out", message_id))
    envelope = seal(
        kind=Kind.MESSAGE,
        sender=identity.name,
        recipient=peer.name,
        envelope_id=message_id,
        statement=statement,
        recipient_key=peer.encryption_key,
    )
    queued.add(
        _outgoing_row(
            message_id=message_id,
            peer=peer.name,
            seq=item.seq,
            kind=Kind.MESSAGE,
            msg_type=draft.msg_type,
            priority=draft.priority,
            created_at_us=to_us(now),
            expires_at_us=to_us(item.expires),
            in_reply_to=draft.in_reply_to,
            body=item.body,
            statement=statement,
            envelope=envelope,
            author=draft.author,
            released_by=draft.released_by,
            notification=draft.notification,
        )
    )
    if draft.in_reply_to is not None:
        queued.events.append(
            (draft.in_reply_to, State.ANSWERED, to_us(now), f"answered by {message_id}")
        )
    return message_id


def submit_messages(
    store: Store, identity: Identity, drafts: list[Draft], *, now: datetime
) -> list[str]:
    """Sign, seal and durably queue messages in one transaction: all of them or none."""
    with store.write() as conn:
        return queue_messages(conn, identity, drafts, now=now)


def queue_messages(
    conn: Connection, identity: Identity, drafts: list[Draft], *, now: datetime
) -> list[str]:
    """``submit_messages`` inside the caller's transaction (a key event commits its messages
    with the key change they announce)."""
    # One tree head and one transcript append serve the whole batch.
    head = current_own_head(conn, identity, now)
    entries: list[transcript.NewEntry] = []
    queued = _Queued()
    unsigned = [_prepare(conn, identity, draft, now, head, queued) for draft in drafts]
    statements = _sign_all(identity, unsigned)
    ids = [
        _finish(identity, item, statement, now, entries, queued)
        for item, statement in zip(unsigned, statements, strict=True)
    ]
    queued.write(conn)
    transcript.append(conn, entries)
    return ids


def submit_message(
    store: Store,
    identity: Identity,
    peer: Card,
    *,
    msg_type: str,
    priority: str,
    body: dict[str, Any],
    now: datetime,
    ttl: timedelta,
    in_reply_to: str | None = None,
    author: str | None = None,
) -> str:
    """Sign, seal and durably queue one message to ``peer``; return its id."""
    draft = Draft(peer, msg_type, priority, body, ttl, in_reply_to, author=author)
    return submit_messages(store, identity, [draft], now=now)[0]


def _inbound(conn: Connection, message_id: str) -> Any:
    row = conn.execute(
        select(
            messages.c.id,
            messages.c.peer,
            messages.c.seq,
            messages.c.kind,
            messages.c.priority,
            messages.c.direction,
            messages.c.signed_hash,
            messages.c.envelope,
        ).where(messages.c.id == message_id)
    ).first()
    if row is None:
        raise NotFoundError(f"no message {message_id}", code=ErrorCode.UNKNOWN_MESSAGE)
    if row.direction != "in" or row.kind != Kind.MESSAGE.value:
        raise ProtocolError(f"{message_id} is not a received message")
    return row


def _check_answerable(conn: Connection, message_id: str, peer: str) -> None:
    row = _inbound(conn, message_id)
    if row.peer != peer:
        raise ProtocolError(f"{message_id} came from {row.peer!r}, not {peer!r}")


def acknowledge(
    store: Store,
    identity: Identity,
    peer: Card,
    message_id: str,
    *,
    now: datetime,
    ttl: timedelta,
    operator: str,
    lang: str | None = None,
    tz: str | None = None,
    text_hash: str | None = None,
) -> str:
    """Queue a signed ACKNOWLEDGED receipt for a received message; return the receipt id.

    Acknowledging twice is refused: the first acknowledgement is the record.
    """
    receipt_id = new_id(now)
    with store.write() as conn:
        row = _inbound(conn, message_id)
        if row.peer != peer.name:
            raise ProtocolError(f"{message_id} came from {row.peer!r}, not {peer.name!r}")
        if has_event(conn, message_id, [State.ACKNOWLEDGED]):
            raise ProtocolError(
                f"{message_id} is already acknowledged", code=ErrorCode.INVALID_STATE
            )
        seq = next_out_seq(conn, peer.name)
        item = ReceiptItem(
            id=message_id,
            seq=int(row.seq),
            envelope_hash=sha256_hex(bytes(row.envelope)),
            signed_hash=row.signed_hash,
        )
        statement = sign_receipt(
            identity,
            to=peer.name,
            receipt_id=receipt_id,
            created=now,
            kind=ReceiptKind.ACKNOWLEDGED,
            items=[item],
            seq=seq,
            operator=operator,
            lang=lang,
            tz=tz,
            text_hash=text_hash,
        )
        envelope = seal(
            kind=Kind.RECEIPT,
            sender=identity.name,
            recipient=peer.name,
            envelope_id=receipt_id,
            statement=statement,
            recipient_key=peer.encryption_key,
        )
        body: dict[str, Any] = {
            "kind": ReceiptKind.ACKNOWLEDGED.value,
            "acknowledges": message_id,
            "operator": operator,
        }
        if lang is not None:
            body["lang"] = lang
        if tz is not None:
            body["tz"] = tz
        if text_hash is not None:
            body["text_hash"] = text_hash
        queued = _Queued()
        queued.add(
            _outgoing_row(
                message_id=receipt_id,
                peer=peer.name,
                seq=seq,
                kind=Kind.RECEIPT,
                msg_type="receipt.acknowledged",
                priority=row.priority,
                created_at_us=to_us(now),
                expires_at_us=to_us(now + ttl),
                in_reply_to=message_id,
                body=body,
                statement=statement,
                envelope=envelope,
            )
        )
        queued.write(conn)
        transcript.append(conn, [transcript.NewEntry(statement, "receipt.out", receipt_id)])
        store_receipt(
            conn,
            receipt_id=receipt_id,
            direction="out",
            peer=peer.name,
            kind=ReceiptKind.ACKNOWLEDGED.value,
            signed=statement,
            at_us=to_us(now),
            message_ids=[message_id],
        )
        add_event(conn, message_id, State.ACKNOWLEDGED, to_us(now), f"by {operator}")
    return receipt_id
