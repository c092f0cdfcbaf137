"""Witness cosignatures: a neutral party's signed statement that it saw a log's head.

A witness (the host of the talks, e.g. "helsinki") receives a node's signed tree head with a
consistency proof from the last head of that log it cosigned, checks both, and signs a
cosignature. Once a head is cosigned, the node cannot later show anyone a history that does not
extend it without the witness's record exposing it. A witness sees hashes only, never contents.
Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import msgspec

from hotline.core.card import Identity
from hotline.core.encoding import decode_json, encode_json, format_time, parse_time
from hotline.core.keys import Purpose, SigningPublicKey, verify_statement
from hotline.core.merkle import HASH_SIZE
from hotline.errors import ErrorCode, VerificationError, WireError

COSIGNATURE_VERSION = 1


class _CosignaturePayload(msgspec.Struct, forbid_unknown_fields=True):
    v: int
    witness: str
    log: str
    size: int
    root: str
    time: str


@dataclass(frozen=True, slots=True)
class Cosignature:
    witness: str
    log: str
    size: int
    root: bytes
    time: datetime
    statement: bytes


def cosign(witness: Identity, *, log: str, size: int, root: bytes, time: datetime) -> Cosignature:
    payload = encode_json(
        {
            "v": COSIGNATURE_VERSION,
            "witness": witness.name,
            "log": log,
            "size": size,
            "root": root.hex(),
            "time": format_time(time),
        }
    )
    statement = witness.signing.sign(Purpose.COSIGNATURE, payload)
    return Cosignature(witness.name, log, size, root, time, statement)


def verify_cosignature(
    statement: bytes, witness_key: SigningPublicKey, *, witness: str, log: str
) -> Cosignature:
    """Check a cosignature by ``witness`` of a head of ``log``; return it."""
    checked = verify_statement(statement, Purpose.COSIGNATURE, witness_key)
    payload = decode_json(checked.payload, _CosignaturePayload, what="cosignature")
    if payload.v != COSIGNATURE_VERSION:
        raise WireError(f"cosignature version {payload.v}", code=ErrorCode.BAD_VERSION)
    if (payload.witness, payload.log) != (witness, log):
        raise VerificationError(
            f"cosignature by {payload.witness!r} of {payload.log!r}, expected {witness!r} of "
            f"{log!r}",
            code=ErrorCode.HEADER_MISMATCH,
        )
    try:
        root = bytes.fromhex(payload.root)
    except ValueError as e:
        raise WireError("cosignature root is not hex") from e
    if len(root) != HASH_SIZE or payload.size < 0:
        raise WireError("cosignature size or root out of range")
    return Cosignature(
        payload.witness,
        payload.log,
        payload.size,
        root,
        parse_time(payload.time, what="cosignature time"),
        statement,
    )


__all__ = ["Cosignature", "cosign", "verify_cosignature"]
