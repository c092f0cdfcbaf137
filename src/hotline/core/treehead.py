"""Signed tree heads: a node's signed claim of the size and root of its transcript.

An RFC 9162 root does not commit to its size, so a tree head always signs both together, with the
log's owner and the time. Two heads of one log with the same size and different roots, a head
smaller than one seen before without a valid consistency proof, or a proof that fails, is an
**equivocation**: the owner showed two histories. Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import msgspec

from hotline.core.card import Identity, check_name
from hotline.core.encoding import decode_json, encode_json, format_time, parse_time
from hotline.core.envelope import Kind, ReceiptKind, ReceiptPayload, parse_payload
from hotline.core.keys import Purpose, SigningPublicKey, peek_statement, verify_statement
from hotline.core.merkle import HASH_SIZE, MAX_TREE_SIZE
from hotline.errors import ErrorCode, HotlineError, VerificationError, WireError

TREE_HEAD_VERSION = 1


class _TreeHeadPayload(msgspec.Struct, forbid_unknown_fields=True):
    v: int
    log: str
    size: int
    root: str
    time: str


@dataclass(frozen=True, slots=True)
class TreeHead:
    log: str  # the node whose transcript this is
    size: int
    root: bytes
    time: datetime
    statement: bytes  # the signed statement, exactly as signed

    def same_size_other_root(self, other: TreeHead) -> bool:
        return self.log == other.log and self.size == other.size and self.root != other.root


def sign_tree_head(identity: Identity, *, size: int, root: bytes, time: datetime) -> TreeHead:
    payload = encode_json(
        {
            "v": TREE_HEAD_VERSION,
            "log": identity.name,
            "size": size,
            "root": root.hex(),
            "time": format_time(time),
        }
    )
    statement = identity.signing.sign(Purpose.TREE_HEAD, payload)
    return TreeHead(identity.name, size, root, time, statement)


def _claimed_root(size: int, root_hex: str, *, what: str) -> bytes:
    """The root of a signed size-and-root claim: size within range, root 32 bytes of hex."""
    if not 0 <= size <= MAX_TREE_SIZE:
        raise WireError(f"{what} size {size} out of range")
    try:
        root = bytes.fromhex(root_hex)
    except ValueError as e:
        raise WireError(f"{what} root is not hex") from e
    if len(root) != HASH_SIZE:
        raise WireError(f"{what} root of {len(root)} bytes, expected {HASH_SIZE}")
    return root


def verify_tree_head(statement: bytes, signer: SigningPublicKey, *, log: str) -> TreeHead:
    """Check a tree head statement of ``log`` signed by ``signer`` and return it.

    Steps: 1. both signatures, purpose ``tree-head``; 2. strict payload; 3. the head names
    ``log``; 4. size within range, root 32 bytes of hex.
    """
    checked = verify_statement(statement, Purpose.TREE_HEAD, signer)
    payload = decode_json(checked.payload, _TreeHeadPayload, what="tree head")
    if payload.v != TREE_HEAD_VERSION:
        raise WireError(f"tree head version {payload.v}", code=ErrorCode.BAD_VERSION)
    try:
        check_name(payload.log)
    except HotlineError as e:
        raise WireError(f"tree head log name: {e.detail}") from e
    if payload.log != log:
        raise VerificationError(
            f"tree head of log {payload.log!r}, expected {log!r}", code=ErrorCode.HEADER_MISMATCH
        )
    return TreeHead(
        log=payload.log,
        size=payload.size,
        root=_claimed_root(payload.size, payload.root, what="tree head"),
        time=parse_time(payload.time, what="tree head time"),
        statement=statement,
    )


def verify_held_head(statement: bytes, signer: SigningPublicKey, *, log: str) -> TreeHead:
    """A signed claim of ``log``'s size and root, as a peer shows it back in a heartbeat
    (``your_head``): a tree-head statement, or a DELIVERED receipt of ``log``'s whose tree claim
    is its author's log right after logging the items. Both are checked like any statement
    (both signatures, strict payload); the receipt's ``created`` is the head's time."""
    label = peek_statement(statement)[0]
    if label == Purpose.TREE_HEAD.value:
        return verify_tree_head(statement, signer, log=log)
    if label != Purpose.RECEIPT.value:
        raise VerificationError(
            f"a held head signed for {label!r}, expected a tree head or a receipt",
            code=ErrorCode.WRONG_PURPOSE,
        )
    checked = verify_statement(statement, Purpose.RECEIPT, signer)
    receipt = parse_payload(Kind.RECEIPT, checked.payload)
    if not isinstance(receipt, ReceiptPayload) or receipt.kind != ReceiptKind.DELIVERED.value:
        raise WireError("a held head in a receipt must be a DELIVERED receipt")
    if receipt.from_ != log:
        raise VerificationError(
            f"a receipt of {receipt.from_!r}, expected {log!r}", code=ErrorCode.HEADER_MISMATCH
        )
    if receipt.tree_size is None or receipt.tree_root is None:
        raise WireError("a held receipt without a tree claim")
    return TreeHead(
        log=log,
        size=receipt.tree_size,
        root=_claimed_root(receipt.tree_size, receipt.tree_root, what="receipt tree"),
        time=parse_time(receipt.created, what="receipt created"),
        statement=statement,
    )


__all__ = ["TreeHead", "sign_tree_head", "verify_held_head", "verify_tree_head"]
