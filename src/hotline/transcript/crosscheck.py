"""Cross-checking the two sides' records of one link, message by message.

For every message and receipt exchanged with a peer, both logs must hold the exact signed
statement: ours (read from our store) and the peer's (proved by an RFC 9162 inclusion proof that
the peer serves, against a tree head the peer signed and we keep). The peer's proofs are fetched
by the caller; this module only decides, so it is testable without a network.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Connection, and_, select

from hotline.core import merkle
from hotline.core.encoding import b64encode
from hotline.core.treehead import TreeHead
from hotline.errors import HotlineError
from hotline.store.schema import messages, receipts
from hotline.transcript._log import consistency_proof, inclusion_proof, leaves_by_ref
from hotline.transcript.heads import PeerHead, peer_heads


class PeerLog(Protocol):
    """The peer's transcript as its link API serves it."""

    async def leaf_indexes(self, ref: str) -> list[int]: ...

    async def inclusion_proof(self, index: int, size: int) -> list[bytes]: ...


@dataclass(frozen=True, slots=True)
class ItemCheck:
    ref: str
    kind: str  # message.out, message.in, receipt.out, receipt.in
    ours: str  # ok | missing | mismatch
    theirs: str  # ok | missing | mismatch | unproved
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.ours == "ok" and self.theirs == "ok"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "kind": self.kind,
            "ours": self.ours,
            "theirs": self.theirs,
            "detail": self.detail,
        }


def exchanged_statements(conn: Connection, peer: str) -> list[tuple[str, str, bytes]]:
    """(ref, kind, signed statement) of everything exchanged with ``peer``, in our log order."""
    out: list[tuple[str, str, bytes]] = []
    for row in conn.execute(
        select(messages.c.id, messages.c.direction, messages.c.kind, messages.c.signed).where(
            messages.c.peer == peer
        )
    ):
        out.append((row.id, f"{row.kind}.{row.direction}", bytes(row.signed)))
    for receipt in conn.execute(
        select(receipts.c.id, receipts.c.direction, receipts.c.signed).where(
            and_(receipts.c.peer == peer, receipts.c.kind == "delivered")
        )
    ):
        out.append((receipt.id, f"receipt.{receipt.direction}", bytes(receipt.signed)))
    return out


def check_ours(conn: Connection, ref: str, statement: bytes) -> tuple[str, str]:
    leaves = leaves_by_ref(conn, ref)
    if not leaves:
        return "missing", "not in our log"
    if all(leaf.leaf_hash != merkle.leaf_hash(statement) for leaf in leaves):
        return "mismatch", f"our log holds other bytes for {ref}"
    return "ok", ""


def latest_checked_head(conn: Connection, peer: str) -> PeerHead | None:
    checked = [h for h in peer_heads(conn, peer, limit=100_000) if h.checked == 1]
    return max(checked, key=lambda h: h.size) if checked else None


async def check_theirs(
    head: PeerHead | None, ref: str, statement: bytes, peer_log: PeerLog
) -> tuple[str, str]:
    """Is ``statement`` in the peer's log, proved against a head we checked?"""
    if head is None:
        return "unproved", "no checked tree head of the peer yet"
    try:
        indexes = await peer_log.leaf_indexes(ref)
    except HotlineError as e:
        return "unproved", f"peer did not answer: {e.detail}"
    if not indexes:
        return "missing", "the peer's log has no leaf for it"
    inside = [i for i in indexes if i < head.size]
    if not inside:
        return "unproved", f"logged by the peer after its checked head of size {head.size}"
    leaf = merkle.leaf_hash(statement)
    problems = []
    for index in inside:
        try:
            proof = await peer_log.inclusion_proof(index, head.size)
            merkle.verify_inclusion(
                leaf_hash=leaf, index=index, size=head.size, proof=proof, root=head.root
            )
        except HotlineError as e:
            problems.append(f"leaf {index}: {e.detail}")
            continue
        return "ok", ""
    return "mismatch", "the peer's log holds other bytes: " + "; ".join(problems)


def own_log_section(
    conn: Connection, items: list[tuple[str, str, bytes]], heads: list[TreeHead]
) -> dict[str, Any]:
    """Our log's part of an audit bundle: our ``heads`` (smallest first), consistency proofs
    between them, and an inclusion proof of each item's leaf in the last head."""
    last = heads[-1]
    return {
        "heads": [b64encode(h.statement) for h in heads],
        "consistency": [
            {
                "first": a.size,
                "second": b.size,
                "proof": [b64encode(x) for x in consistency_proof(conn, a.size, b.size)],
            }
            for a, b in itertools.pairwise(heads)
            if a.size < b.size
        ],
        "entries": [
            {
                "index": leaf.index,
                "kind": leaf.kind,
                "ref": ref,
                "statement": hashlib.sha256(statement).hexdigest(),
                "proof": [b64encode(x) for x in inclusion_proof(conn, leaf.index, last.size)],
            }
            for ref, _kind, statement in items
            for leaf in leaves_by_ref(conn, ref)
            if leaf.leaf_hash == merkle.leaf_hash(statement) and leaf.index < last.size
        ],
    }


__all__ = [
    "ItemCheck",
    "PeerLog",
    "check_ours",
    "check_theirs",
    "exchanged_statements",
    "latest_checked_head",
    "own_log_section",
]
