"""Tree heads: our own signed heads, and every head a peer showed us, with equivocation checks.

Our heads are signed at most once per ``OWN_HEAD_MAX_AGE_S`` (ML-DSA signing is the costly part
of a message; one head serves every message sent in that interval) and kept forever, as is every
head a peer showed us, with the statement that carried it as evidence (a standalone tree head or
a DELIVERED receipt, both signed by the peer).

A peer's heads must all describe one growing log:
- two heads with one size and different roots are an equivocation at once;
- each head is checked against the last head already checked, by a consistency proof fetched
  from the peer (``hotline.link`` does the fetching; ``check_consistency`` here is pure logic).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta
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
    and_,
    bindparam,
    insert,
    select,
    update,
)

from hotline.core import merkle
from hotline.core.card import Identity
from hotline.core.encoding import from_us, to_us
from hotline.core.treehead import TreeHead, sign_tree_head
from hotline.errors import ErrorCode, VerificationError
from hotline.store.messages import record_security_event
from hotline.store.prepared import Prepared, prepared_insert
from hotline.store.schema import metadata
from hotline.transcript._log import size_and_root

#: A message carries our latest head; a new one is signed when the log grew and the last head
#: is older than this.
OWN_HEAD_MAX_AGE_S = 1.0

own_tree_heads = Table(
    "own_tree_heads",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("root", LargeBinary, nullable=False),
    Column("statement", LargeBinary, nullable=False),
    Column("at_us", BigInteger, nullable=False),
)

peer_tree_heads = Table(
    "peer_tree_heads",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("peer", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("root", LargeBinary, nullable=False),
    Column("kind", String(16), nullable=False),  # "tree-head" | "receipt"
    Column("evidence", LargeBinary, nullable=False),  # the signed statement that carried it
    Column("received_at_us", BigInteger, nullable=False),
    # 0: not yet checked; 1: consistent with every head checked before; 2: part of an alarm
    Column("checked", Integer, nullable=False, default=0),
)
Index("ix_peer_tree_heads_peer_size", peer_tree_heads.c.peer, peer_tree_heads.c.size)
# Migration 0010: what ``next_check`` asks for (unchecked heads; the largest checked one).
Index(
    "ix_peer_tree_heads_peer_checked_size",
    peer_tree_heads.c.peer,
    peer_tree_heads.c.checked,
    peer_tree_heads.c.size,
)


@dataclass(frozen=True, slots=True)
class PeerHead:
    id: int
    peer: str
    size: int
    root: bytes
    kind: str
    evidence: bytes
    received_at_us: int
    checked: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "peer": self.peer,
            "size": self.size,
            "root": self.root.hex(),
            "kind": self.kind,
            "received": from_us(self.received_at_us).isoformat(),
            "checked": {0: "unchecked", 1: "consistent", 2: "alarm"}[self.checked],
        }


# Prepared once (hotline.store.prepared): every message sent and received runs these.
_LATEST_OWN = Prepared(
    select(
        own_tree_heads.c.size,
        own_tree_heads.c.root,
        own_tree_heads.c.statement,
        own_tree_heads.c.at_us,
    )
    .order_by(own_tree_heads.c.size.desc())
    .limit(1)
)
_PEER_ROOTS_OF_SIZE = Prepared(
    select(peer_tree_heads.c.root).where(
        and_(
            peer_tree_heads.c.peer == bindparam("peer"), peer_tree_heads.c.size == bindparam("size")
        )
    )
)
_INSERT_PEER_HEAD = prepared_insert(
    peer_tree_heads, "peer", "size", "root", "kind", "evidence", "received_at_us", "checked"
)


def latest_own_head(conn: Connection) -> TreeHead | None:
    row = _LATEST_OWN.first(conn)
    if row is None:
        return None
    size, root, statement, at_us = row
    return TreeHead("", int(size), bytes(root), from_us(int(at_us)), bytes(statement))


def own_heads_upto(conn: Connection, size: int) -> list[TreeHead]:
    """Every head we signed up to ``size``, smallest first."""
    rows = conn.execute(
        select(own_tree_heads).where(own_tree_heads.c.size <= size).order_by(own_tree_heads.c.size)
    )
    return [
        TreeHead("", int(r.size), bytes(r.root), from_us(r.at_us), bytes(r.statement)) for r in rows
    ]


def current_own_head(
    conn: Connection, identity: Identity, now: datetime, *, max_age_s: float = OWN_HEAD_MAX_AGE_S
) -> TreeHead:
    """Our latest signed head; a new one if the log grew and the latest is older than max_age."""
    latest = latest_own_head(conn)
    # A head younger than max_age serves as it is: the log's size and root are not read (this
    # runs before every batch of messages is signed).
    if latest is not None and now - latest.time < timedelta(seconds=max_age_s):
        return latest
    size, root = size_and_root(conn)
    if latest is not None and latest.size == size:
        return latest
    head = sign_tree_head(identity, size=size, root=root, time=now)
    conn.execute(
        insert(own_tree_heads).values(
            size=size, root=root, statement=head.statement, at_us=to_us(now)
        )
    )
    return head


def _row(row: Any) -> PeerHead:
    return PeerHead(
        int(row.id),
        row.peer,
        int(row.size),
        bytes(row.root),
        row.kind,
        bytes(row.evidence),
        int(row.received_at_us),
        int(row.checked),
    )


def record_peer_head(
    conn: Connection,
    *,
    peer: str,
    size: int,
    root: bytes,
    kind: str,
    evidence: bytes,
    now_us: int,
) -> bool:
    """Keep a head ``peer`` showed us. Return False if it equivocates (alarm raised)."""
    roots = [bytes(r[0]) for r in _PEER_ROOTS_OF_SIZE.all(conn, {"peer": peer, "size": size})]
    if root in roots:
        return True  # seen before: nothing new
    if not roots:  # a new size (every DELIVERED receipt brings one): keep it, to be checked
        _INSERT_PEER_HEAD.execute(
            conn,
            {
                "peer": peer,
                "size": size,
                "root": root,
                "kind": kind,
                "evidence": evidence,
                "received_at_us": now_us,
                "checked": 0,
            },
        )
        return True
    same_size = list(
        conn.execute(
            select(peer_tree_heads).where(
                and_(peer_tree_heads.c.peer == peer, peer_tree_heads.c.size == size)
            )
        )
    )
    if any(bytes(r.root) == root for r in same_size):
        return True  # seen before: nothing new
    result = conn.execute(
        insert(peer_tree_heads).values(
            peer=peer,
            size=size,
            root=root,
            kind=kind,
            evidence=evidence,
            received_at_us=now_us,
            checked=2 if same_size else 0,
        )
    )
    if same_size:
        other = _row(same_size[0])
        new_id = result.inserted_primary_key[0] if result.inserted_primary_key else "?"
        conn.execute(
            update(peer_tree_heads).where(peer_tree_heads.c.id == other.id).values(checked=2)
        )
        raise_equivocation(
            conn,
            peer=peer,
            now_us=now_us,
            detail=f"two heads of size {size}: root {other.root.hex()} ({other.kind}, "
            f"head #{other.id}) and {root.hex()} ({kind}, head #{new_id})",
        )
        return False
    return True


def raise_equivocation(conn: Connection, *, peer: str, now_us: int, detail: str) -> None:
    """The loudest alarm hotline has: the peer showed two different histories."""
    record_security_event(
        conn, at_us=now_us, code="equivocation", peer=peer, source=None, detail=detail
    )


def peer_heads(conn: Connection, peer: str, *, limit: int = 1000) -> list[PeerHead]:
    rows = conn.execute(
        select(peer_tree_heads)
        .where(peer_tree_heads.c.peer == peer)
        .order_by(peer_tree_heads.c.size, peer_tree_heads.c.id)
        .limit(limit)
    )
    return [_row(r) for r in rows]


def largest_peer_head(conn: Connection, peer: str) -> PeerHead | None:
    """The largest head of ``peer``'s log that ``peer`` itself signed: a tree-head statement or
    a DELIVERED receipt's tree claim (not a witness's cosignature, which the peer could not
    check with its own key). Shown back to the peer in heartbeats, so that a peer restored from
    an old backup learns what it lost (hold.py), receipts it signed after its last head
    included."""
    row = conn.execute(
        select(peer_tree_heads)
        .where(peer_tree_heads.c.peer == peer, peer_tree_heads.c.kind.in_(("tree-head", "receipt")))
        .order_by(peer_tree_heads.c.size.desc(), peer_tree_heads.c.id.desc())
        .limit(1)
    ).first()
    return None if row is None else _row(row)


def next_check(conn: Connection, peer: str) -> tuple[PeerHead | None, PeerHead] | None:
    """The next (baseline, candidate) pair to prove consistent, or None if all are checked.

    The baseline is the largest head already checked; the first head ever received is taken on
    first use (it is what the fingerprint check of the peer's key vouches for).
    """
    unchecked = conn.execute(
        select(peer_tree_heads)
        .where(and_(peer_tree_heads.c.peer == peer, peer_tree_heads.c.checked == 0))
        .order_by(peer_tree_heads.c.id)
        .limit(1)
    ).first()
    if unchecked is None:
        return None
    baseline = conn.execute(
        select(peer_tree_heads)
        .where(and_(peer_tree_heads.c.peer == peer, peer_tree_heads.c.checked == 1))
        .order_by(peer_tree_heads.c.size.desc())
        .limit(1)
    ).first()
    return (None if baseline is None else _row(baseline)), _row(unchecked)


def unchecked_chain(conn: Connection, peer: str, limit: int) -> list[PeerHead] | None:
    """The largest checked head of ``peer`` and up to ``limit - 1`` unchecked ones (oldest
    first), sorted by size: a chain whose consecutive pairs, proved consistent, prove every one of
    them consistent with the baseline and with each other (each is a prefix of the largest).
    None if nothing is unchecked or no baseline exists yet (``next_check`` takes the first head).

    Sizes in the chain are distinct: a second root for a size already held is an equivocation
    on arrival (``record_peer_head``) and never waits unchecked.
    """
    pair = next_check(conn, peer)
    if pair is None or pair[0] is None:
        return None
    baseline = pair[0]
    unchecked = [
        _row(r)
        for r in conn.execute(
            select(peer_tree_heads)
            .where(and_(peer_tree_heads.c.peer == peer, peer_tree_heads.c.checked == 0))
            .order_by(peer_tree_heads.c.id)
            .limit(limit - 1)
        )
    ]
    return sorted([baseline, *unchecked], key=lambda h: h.size)


def check_chain(chain: list[PeerHead], proofs: list[list[bytes]]) -> None:
    """Raise VerificationError(BAD_PROOF) unless each head of ``chain`` (sorted by size) grows
    into the next one by its proof (``proofs[i]`` from ``chain[i]`` to ``chain[i + 1]``)."""
    if len(proofs) != len(chain) - 1:
        raise VerificationError(
            f"{len(proofs)} proofs for a chain of {len(chain)} heads", code=ErrorCode.BAD_PROOF
        )
    for (small, large), proof in zip(itertools.pairwise(chain), proofs, strict=True):
        check_consistency(small, large, proof)


def mark_all_checked(conn: Connection, head_ids: list[int]) -> None:
    """Mark heads proved consistent (one statement for a whole chain)."""
    conn.execute(
        update(peer_tree_heads).where(peer_tree_heads.c.id.in_(head_ids)).values(checked=1)
    )


def mark_checked(conn: Connection, head_id: int, *, consistent: bool) -> None:
    conn.execute(
        update(peer_tree_heads)
        .where(peer_tree_heads.c.id == head_id)
        .values(checked=1 if consistent else 2)
    )


def check_consistency(baseline: PeerHead, candidate: PeerHead, proof: list[bytes]) -> None:
    """Raise VerificationError(BAD_PROOF) unless one log grows from the smaller head to the
    larger one; both directions occur (a head can arrive late)."""
    small, large = (
        (baseline, candidate) if baseline.size <= candidate.size else (candidate, baseline)
    )
    merkle.verify_consistency(
        old_size=small.size,
        new_size=large.size,
        old_root=small.root,
        new_root=large.root,
        proof=proof,
    )


def equivocation_count(conn: Connection, peer: str | None = None) -> int:
    query = select(peer_tree_heads.c.id).where(peer_tree_heads.c.checked == 2)
    if peer is not None:
        query = query.where(peer_tree_heads.c.peer == peer)
    return len(list(conn.execute(query)))


__all__ = [
    "OWN_HEAD_MAX_AGE_S",
    "PeerHead",
    "check_chain",
    "check_consistency",
    "current_own_head",
    "equivocation_count",
    "largest_peer_head",
    "latest_own_head",
    "mark_all_checked",
    "mark_checked",
    "next_check",
    "own_heads_upto",
    "peer_heads",
    "raise_equivocation",
    "record_peer_head",
    "unchecked_chain",
]
