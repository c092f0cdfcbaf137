"""Recovered evidence: the statements of a link a restore lost, fetched back from the peer.

A store restored from an old backup stays on hold (hold.py) while a peer holds more of the link
than it does. The node then asks the peer for those statements (hotline.link.recovery) and keeps
each one that passed every check of :func:`hotline.core.recovery.verify_answer` here: its
author's signature, and its inclusion in the peer's log under a signed head of the peer that
extends the heads of the peer we hold. They never enter our own transcript (their order in our
log is lost, and appending would fork it); they are evidence an operator reads
(``hotline recovered``, ``GET /api/v1/recovered``), re-checkable from the row alone with the
peer's head in ``peer_tree_heads``. The table is append-only (migration 0019 adds triggers).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    func,
    insert,
    select,
)

from hotline.core import merkle
from hotline.core.encoding import from_us, parse_time, to_us
from hotline.core.envelope import MessagePayload, sha256_hex
from hotline.core.recovery import Answer, Direction, Recovered
from hotline.errors import HotlineError
from hotline.store.schema import metadata

recovered_statements = Table(
    "recovered_statements",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("peer", String(64), nullable=False),
    # As in ``messages``: "in" the peer's statement to us, "out" ours to the peer.
    Column("direction", String(3), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("ref", String(36), nullable=False),  # the message or receipt id (signed)
    Column("kind", String(16), nullable=False),  # "message" | "receipt" (ACKNOWLEDGED)
    Column("msg_type", String(64), nullable=False),
    Column("priority", String(16), nullable=False),
    Column("created", String(40), nullable=False),  # the author's signed claim, as signed
    Column("body", Text, nullable=False),  # JSON of the signed body, for display
    Column("signed", LargeBinary, nullable=False),  # the author's statement, exactly
    Column("signed_hash", String(64), nullable=False),
    Column("key_id", String(32), nullable=False),  # the author's key that signed it
    # Where the peer logged it, and the proof, against the peer's head (size, root).
    Column("leaf_index", BigInteger, nullable=False),
    Column("proof", LargeBinary, nullable=False),
    Column("tree_size", BigInteger, nullable=False),
    Column("tree_root", String(64), nullable=False),
    Column("recovered_at_us", BigInteger, nullable=False),
    UniqueConstraint("peer", "direction", "seq", name="uq_recovered_statements_peer_direction_seq"),
)

_DIRECTION = {Direction.YOURS: "in", Direction.MINE: "out"}
#: Rows a listing returns at most (the CLI and the API page by nothing else; a lost tail is short).
MAX_LISTED = 10_000


@dataclass(frozen=True, slots=True)
class RecoveredRow:
    peer: str
    direction: str
    seq: int
    ref: str
    kind: str
    msg_type: str
    priority: str
    created: str
    body: str
    signed_hash: str
    key_id: str
    leaf_index: int
    tree_size: int
    tree_root: str
    recovered_at_us: int
    #: The compromise time of the signing key, if it was revoked (hotline keys revoke, or the
    #: peer's revocation): a statement created at or after it may be the thief's (threat K1).
    key_compromised_at_us: int | None = None

    @property
    def key_suspect(self) -> bool:
        if self.key_compromised_at_us is None:
            return False
        try:
            created_us = to_us(parse_time(self.created, what="recovered created"))
        except HotlineError:
            return True  # a time we cannot read cannot clear the statement either
        return created_us >= self.key_compromised_at_us

    def to_dict(self) -> dict[str, Any]:
        return {
            "peer": self.peer,
            "direction": self.direction,
            "seq": self.seq,
            "id": self.ref,
            "kind": self.kind,
            "type": self.msg_type,
            "priority": self.priority,
            "created": self.created,
            "body": json.loads(self.body),
            "signed_hash": self.signed_hash,
            "key_id": self.key_id,
            # Only verified statements are ever stored: the checks that passed.
            "verified": {
                "signature": True,
                "inclusion": {
                    "leaf_index": self.leaf_index,
                    "tree_size": self.tree_size,
                    "tree_root": self.tree_root,
                },
            },
            "recovered": from_us(self.recovered_at_us).isoformat(),
            # Signed by a key revoked as compromised as of a time at or before its creation.
            "key_suspect": self.key_suspect,
        }


@dataclass(frozen=True, slots=True)
class Stored:
    """What one answer added: new rows, and sequence numbers already held with other bytes."""

    new: tuple[Recovered, ...]
    conflicts: tuple[str, ...]


def highest_recovered(conn: Connection, peer: str) -> dict[Direction, int]:
    """The highest sequence number recovered from ``peer`` in each direction (0 if none)."""
    rows = conn.execute(
        select(recovered_statements.c.direction, func.max(recovered_statements.c.seq))
        .where(recovered_statements.c.peer == peer)
        .group_by(recovered_statements.c.direction)
    )
    found = {str(d): int(s) for d, s in rows}
    return {direction: found.get(column, 0) for direction, column in _DIRECTION.items()}


def _display(item: Recovered) -> tuple[str, str, str, str]:
    """(type, priority, created, body JSON) of a recovered statement, as signed."""
    payload = item.payload
    if isinstance(payload, MessagePayload):
        body = json.dumps(payload.body, ensure_ascii=False, sort_keys=True)
        return payload.type[:64], payload.priority[:16], payload.created[:40], body
    acknowledged = {"acknowledges": payload.items[0].id, "operator": payload.operator}
    return "acknowledged", "", payload.created[:40], json.dumps(acknowledged)


def store_answer(conn: Connection, *, peer: str, answer: Answer, now_us: int) -> Stored:
    """Keep every verified statement of ``answer`` not held yet, in the caller's transaction.

    A sequence number already held with the same statement is passed over; held with another
    statement (two signed statements for one number of one direction) it is not replaced, and
    named in ``conflicts`` for the caller to raise."""
    new: list[Recovered] = []
    conflicts: list[str] = []
    for item in answer.items:
        direction = _DIRECTION[item.direction]
        signed_hash = sha256_hex(item.statement)
        held = conn.execute(
            select(recovered_statements.c.signed_hash).where(
                and_(
                    recovered_statements.c.peer == peer,
                    recovered_statements.c.direction == direction,
                    recovered_statements.c.seq == item.seq,
                )
            )
        ).scalar()
        if held == signed_hash:
            continue
        if held is not None:
            conflicts.append(
                f"{direction} seq {item.seq}: held statement {held}, now shown {signed_hash}"
            )
            continue
        msg_type, priority, created, body = _display(item)
        conn.execute(
            insert(recovered_statements).values(
                peer=peer,
                direction=direction,
                seq=item.seq,
                ref=item.id,
                kind=item.kind,
                msg_type=msg_type,
                priority=priority,
                created=created,
                body=body,
                signed=item.statement,
                signed_hash=signed_hash,
                key_id=item.key_id.hex(),
                leaf_index=item.index,
                proof=merkle.encode_proof(list(item.proof)),
                tree_size=answer.head.size,
                tree_root=answer.head.root.hex(),
                recovered_at_us=now_us,
            )
        )
        new.append(item)
    return Stored(tuple(new), tuple(conflicts))


def list_recovered(
    conn: Connection, peer: str | None, *, compromised: Mapping[str, int]
) -> list[RecoveredRow]:
    """What was recovered (from ``peer``, or from every peer), with each row's key standing:
    ``compromised`` maps a signing key id (hex) to the compromise time of its revocation
    (``hotline.link.keyring.compromise_times``)."""
    query = select(recovered_statements)
    if peer is not None:
        query = query.where(recovered_statements.c.peer == peer)
    rows = conn.execute(
        query.order_by(
            recovered_statements.c.peer,
            recovered_statements.c.direction,
            recovered_statements.c.seq,
        ).limit(MAX_LISTED)
    )
    return [
        RecoveredRow(
            peer=r.peer,
            direction=r.direction,
            seq=int(r.seq),
            ref=r.ref,
            kind=r.kind,
            msg_type=r.msg_type,
            priority=r.priority,
            created=r.created,
            body=r.body,
            signed_hash=r.signed_hash,
            key_id=r.key_id,
            leaf_index=int(r.leaf_index),
            tree_size=int(r.tree_size),
            tree_root=r.tree_root,
            recovered_at_us=int(r.recovered_at_us),
            key_compromised_at_us=compromised.get(r.key_id),
        )
        for r in rows
    ]


def ranges(seqs: list[int]) -> str:
    """``[2, 3, 4, 7]`` as "2..4, 7"."""
    parts: list[str] = []
    for seq in sorted(seqs):
        if parts and seq == int(parts[-1].split("..")[-1]) + 1:
            parts[-1] = f"{parts[-1].split('..')[0]}..{seq}"
        else:
            parts.append(str(seq))
    return ", ".join(parts)


__all__ = [
    "MAX_LISTED",
    "RecoveredRow",
    "Stored",
    "highest_recovered",
    "list_recovered",
    "ranges",
    "recovered_statements",
    "store_answer",
]
