"""Witnessing: both sides of it, over the store.

On a **witness** node: ``cosign_head`` checks a node's signed head against the last head of that
log the witness cosigned (a consistency proof from that size), records it and cosigns it. A head
that is not consistent is refused and recorded as an equivocation of that log.

On a **node**: every cosignature a witness returned is kept (``record_cosignature``); the latest
is what the node shows as its witnessed tree head, and what goes into audit bundles.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    func,
    insert,
    select,
)

from hotline.core import merkle
from hotline.core.card import Card, Identity
from hotline.core.encoding import from_us, to_us
from hotline.core.treehead import verify_tree_head
from hotline.core.witness import Cosignature, cosign
from hotline.errors import ErrorCode, HotlineError, ProtocolError, VerificationError
from hotline.store.schema import metadata
from hotline.transcript._log import size_and_root
from hotline.transcript.heads import own_tree_heads

# What a witness cosigned, per log: append-only; the largest size is the log's current state.
witnessed_heads = Table(
    "witnessed_heads",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("log", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("root", LargeBinary, nullable=False),
    Column("tree_head", LargeBinary, nullable=False),  # the node's signed head
    Column("cosignature", LargeBinary, nullable=False),  # ours, as returned
    Column("at_us", BigInteger, nullable=False),
)
Index("ix_witnessed_heads_log_size", witnessed_heads.c.log, witnessed_heads.c.size)

# Cosignatures a node received from its witnesses.
cosignatures = Table(
    "cosignatures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("witness", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("root", LargeBinary, nullable=False),
    Column("statement", LargeBinary, nullable=False),
    Column("at_us", BigInteger, nullable=False),
)
Index("ix_cosignatures_witness_size", cosignatures.c.witness, cosignatures.c.size)


class StaleView(ProtocolError):
    """The node proved consistency from another size than the witness's latest for its log."""

    def __init__(self, witness_size: int) -> None:
        super().__init__(
            f"the witness last cosigned this log at size {witness_size}; prove from there",
            code=ErrorCode.INVALID_STATE,
            fields={"witness_size": witness_size},
        )
        self.witness_size = witness_size


@dataclass(frozen=True, slots=True)
class WitnessedHead:
    log: str
    size: int
    root: bytes


def latest_witnessed(conn: Connection, log: str) -> WitnessedHead | None:
    row = conn.execute(
        select(witnessed_heads.c.size, witnessed_heads.c.root)
        .where(witnessed_heads.c.log == log)
        .order_by(witnessed_heads.c.size.desc())
        .limit(1)
    ).first()
    return None if row is None else WitnessedHead(log, int(row.size), bytes(row.root))


def cosign_head(
    conn: Connection,
    witness: Identity,
    node: Card,
    *,
    tree_head: bytes,
    old_size: int,
    proof: list[bytes],
    now: datetime,
) -> Cosignature:
    """Steps: 1. the head is signed by the node it names; 2. ``old_size`` is the size this
    witness last cosigned for the log (else StaleView); 3. the proof shows the new head extends
    it (else an equivocation is recorded and refused); 4. record and cosign."""
    head = verify_tree_head(tree_head, node.signing_key, log=node.name)  # 1
    last = latest_witnessed(conn, node.name)
    if (last.size if last else 0) != old_size:  # 2
        raise StaleView(last.size if last else 0)
    if last is not None:  # 3
        try:
            if head.size < last.size:
                raise VerificationError(
                    f"head of size {head.size} is smaller than the cosigned {last.size}",
                    code=ErrorCode.BAD_PROOF,
                )
            merkle.verify_consistency(
                old_size=last.size,
                new_size=head.size,
                old_root=last.root,
                new_root=head.root,
                proof=proof,
            )
        except HotlineError as e:
            # The caller records the alarm in its own transaction: this one rolls back.
            raise VerificationError(
                f"head of size {head.size} does not extend the head of size {last.size} this "
                f"witness cosigned: {e.detail}",
                code=ErrorCode.BAD_PROOF,
            ) from e
    signature = cosign(witness, log=node.name, size=head.size, root=head.root, time=now)  # 4
    conn.execute(
        insert(witnessed_heads).values(
            log=node.name,
            size=head.size,
            root=head.root,
            tree_head=tree_head,
            cosignature=signature.statement,
            at_us=to_us(now),
        )
    )
    return signature


def record_cosignature(conn: Connection, signature: Cosignature, now: datetime) -> None:
    conn.execute(
        insert(cosignatures).values(
            witness=signature.witness,
            size=signature.size,
            root=signature.root,
            statement=signature.statement,
            at_us=to_us(now),
        )
    )


def latest_cosignature(conn: Connection, witness: str) -> dict[str, Any] | None:
    row = conn.execute(
        select(cosignatures)
        .where(cosignatures.c.witness == witness)
        .order_by(cosignatures.c.size.desc(), cosignatures.c.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return {
        "witness": row.witness,
        "size": int(row.size),
        "root": bytes(row.root).hex(),
        "at": from_us(row.at_us).isoformat(),
        "statement": bytes(row.statement),
    }


def witness_lag(
    conn: Connection, witness: str, now_us: int, stale_after_s: float
) -> dict[str, Any]:
    """How far ``witness`` is behind our log: entries it has not cosigned, how long our oldest
    head it has not cosigned has waited, and whether that makes it stale (waited longer than
    ``stale_after_s``)."""
    size = size_and_root(conn)[0]
    latest = latest_cosignature(conn, witness)
    cosigned = 0 if latest is None else int(latest["size"])
    waiting_since = conn.execute(
        select(func.min(own_tree_heads.c.at_us)).where(own_tree_heads.c.size > cosigned)
    ).scalar()
    waited_s = 0.0 if waiting_since is None else max(0.0, (now_us - int(waiting_since)) / 1e6)
    return {
        "behind": size - cosigned,
        "waiting_s": round(waited_s, 1),
        "stale": waiting_since is not None and waited_s > stale_after_s,
    }


def latest_cosignatures(conn: Connection, limit: int) -> list[bytes]:
    """The statement of the latest cosignature of our log by each witness (at most ``limit``
    witnesses): what our heartbeats show the peer, so that it can compare what each witness saw
    with what it holds of our log."""
    newest = (
        select(cosignatures.c.witness, func.max(cosignatures.c.id).label("id"))
        .group_by(cosignatures.c.witness)
        .subquery()
    )
    rows = conn.execute(
        select(cosignatures.c.statement)
        .join(newest, newest.c.id == cosignatures.c.id)
        .order_by(cosignatures.c.witness)
        .limit(limit)
    )
    return [bytes(r.statement) for r in rows]


def cosignatures_upto(conn: Connection, size: int) -> list[tuple[str, bytes]]:
    """(witness, statement) of every cosignature of our heads up to ``size``."""
    return [
        (r.witness, bytes(r.statement))
        for r in conn.execute(
            select(cosignatures.c.witness, cosignatures.c.statement)
            .where(cosignatures.c.size <= size)
            .order_by(cosignatures.c.size)
        )
    ]


__all__ = [
    "StaleView",
    "cosign_head",
    "cosignatures_upto",
    "latest_cosignature",
    "latest_cosignatures",
    "latest_witnessed",
    "record_cosignature",
    "witness_lag",
]
