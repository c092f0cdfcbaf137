"""Cross-checking the two sides' records of one link, message by message.

For every message and receipt exchanged with a peer, both logs must hold the exact signed
statement: ours (read from our store) and the peer's (proved by an RFC 9162 inclusion proof that
the peer serves, against a tree head the peer signed and we keep). The peer's proofs are fetched
by the caller; this module only decides, so it is testable without a network.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Connection, and_, select

from hotline.core import merkle
from hotline.core.encoding import b64encode
from hotline.core.envelope import Kind, ReceiptPayload, parse_payload
from hotline.core.keys import peek_statement
from hotline.core.treehead import TreeHead
from hotline.errors import HotlineError
from hotline.store.schema import messages, receipts
from hotline.transcript._log import consistency_proof, inclusion_proof, leaves_by_ref
from hotline.transcript.heads import PeerHead, peer_heads

_log = logging.getLogger(__name__)


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
    # What the peer's DELIVERED receipts claim about our message (P19): "" if no receipt with a
    # tree claim names it, else ok | false (its log does not hold it where the receipt says)
    # | unproved (the peer did not answer).
    claimed: str = ""

    @property
    def ok(self) -> bool:
        return self.ours == "ok" and self.theirs == "ok" and self.claimed != "false"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "kind": self.kind,
            "ours": self.ours,
            "theirs": self.theirs,
            "detail": self.detail,
            "claimed": self.claimed,
        }


@dataclass(frozen=True, slots=True)
class ReceiptClaim:
    """A signed DELIVERED receipt's claim: the peer logged our message at ``index`` of its tree
    of ``size`` entries whose root is ``root``."""

    receipt: str
    index: int
    size: int
    root: bytes


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


def receipt_claims(conn: Connection, peer: str) -> dict[str, list[ReceiptClaim]]:
    """Message id -> the claims of every DELIVERED receipt from ``peer`` that names it.

    The receipts were verified when they arrived (signature, items ours, leaf_index inside the
    signed tree), so our stored copy is parsed without checking its signatures again.
    """
    out: dict[str, list[ReceiptClaim]] = {}
    for row in conn.execute(
        select(receipts.c.id, receipts.c.signed).where(
            and_(
                receipts.c.peer == peer,
                receipts.c.direction == "in",
                receipts.c.kind == "delivered",
            )
        )
    ):
        payload = parse_payload(Kind.RECEIPT, peek_statement(bytes(row.signed))[2])
        if not isinstance(payload, ReceiptPayload):  # cannot happen: the kind fixes the type
            continue
        if payload.tree_size is None or payload.tree_root is None:
            continue  # an older receipt without a tree claim: nothing to hold it to
        root = bytes.fromhex(payload.tree_root)
        for item in payload.items:
            if item.leaf_index is not None:
                claim = ReceiptClaim(row.id, item.leaf_index, payload.tree_size, root)
                out.setdefault(item.id, []).append(claim)
    return out


async def check_claims(
    claims: list[ReceiptClaim], statement: bytes, peer_log: PeerLog
) -> tuple[str, str]:
    """Does the peer's log hold our message ``statement`` where each receipt says (P19)?

    Each claim is proved against the tree the receipt itself signed: an inclusion proof of the
    message's leaf at the claimed index, in the claimed size, to the claimed root. A receipt
    that names another leaf, a leaf never logged, or a tree the peer cannot prove is false.
    """
    if not claims:
        return "", ""
    leaf = merkle.leaf_hash(statement)
    unproved = []
    for claim in claims:
        try:
            proof = await peer_log.inclusion_proof(claim.index, claim.size)
        except HotlineError as e:
            unproved.append(f"receipt {claim.receipt}: peer did not answer: {e.detail}")
            continue
        try:
            merkle.verify_inclusion(
                leaf_hash=leaf, index=claim.index, size=claim.size, proof=proof, root=claim.root
            )
        except HotlineError as e:
            return "false", (
                f"receipt {claim.receipt} claims leaf {claim.index} of the peer's tree of size "
                f"{claim.size}, which does not hold this message: {e.detail}"
            )
    if unproved:
        return "unproved", "; ".join(unproved)
    return "ok", ""


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


async def cross_check_items(
    head: PeerHead | None,
    items: list[tuple[str, str, bytes]],
    ours: dict[str, tuple[str, str]],
    claims: dict[str, list[ReceiptClaim]],
    peer_log: PeerLog,
) -> list[ItemCheck]:
    """Each exchanged statement in both logs; each receipt claim about our messages (P19)."""
    results = []
    for ref, kind, statement in items:
        theirs, detail_theirs = await check_theirs(head, ref, statement, peer_log)
        claimed, detail_claimed = "", ""
        if kind == "message.out":
            claimed, detail_claimed = await check_claims(claims.get(ref, []), statement, peer_log)
            if claimed == "false":
                _log.warning("audit: false receipt claim for %s: %s", ref, detail_claimed)
        mine, detail_mine = ours[ref]
        detail = "; ".join(d for d in (detail_mine, detail_theirs, detail_claimed) if d)
        results.append(ItemCheck(ref, kind, mine, theirs, detail, claimed))
    return results


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
    "ReceiptClaim",
    "check_claims",
    "check_ours",
    "check_theirs",
    "cross_check_items",
    "exchanged_statements",
    "latest_checked_head",
    "own_log_section",
    "receipt_claims",
]
