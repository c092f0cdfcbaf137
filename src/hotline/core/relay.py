"""Requests to a relay: signed, time-bounded, single-use (pure; no I/O, no clock reads).

A relay (a node of a neutral party, role ``relay``) keeps sealed envelopes for registered nodes.
A node proves who it is to the relay with a signed statement per request:

- ``relay-deposit``: "I, ``from``, hand relay ``relay`` these envelopes" (their SHA-256, in
  order), so that the relay refuses envelopes that were not the signer's to hand over;
- ``relay-pull``: "I, ``from``, ask relay ``relay`` for my envelopes after ``after``" (and
  confirm that I hold everything up to ``after``, which the relay may then delete).

Each names the relay (a request for one relay is refused by another), carries a fresh id (a
relay refuses an id it has seen) and a creation time (refused when too far from the relay's
clock), and has its own label, so no other hotline signature can stand in for it. The relay
reads envelope headers only; it can neither open nor forge an envelope (docs/protocol.md §16).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import msgspec

from hotline.core.card import Identity, check_name
from hotline.core.encoding import decode_json, encode_json, format_time, parse_time
from hotline.core.envelope import MAX_BATCH_ENVELOPES, check_uuid
from hotline.core.keys import Purpose, SigningPublicKey, peek_statement, verify_statement
from hotline.errors import ErrorCode, ProtocolError, VerificationError, WireError

RELAY_REQUEST_VERSION = 1
#: A request made further than this from the relay's clock is refused (replay or clock off).
MAX_REQUEST_SKEW_S = 300.0
#: Longest a pull may wait for mail (long-poll), so that proxies and timeouts stay simple.
MAX_PULL_WAIT_S = 25


class _DepositPayload(msgspec.Struct, forbid_unknown_fields=True):
    v: int
    relay: str
    id: str
    created: str
    envelopes: list[str]
    # ``from`` is a Python keyword: mapped by name.
    sender: str = msgspec.field(name="from")


class _PullPayload(msgspec.Struct, forbid_unknown_fields=True):
    v: int
    relay: str
    id: str
    created: str
    after: int
    wait: int
    sender: str = msgspec.field(name="from")


@dataclass(frozen=True, slots=True)
class DepositRequest:
    sender: str
    relay: str
    id: str
    created: datetime
    digests: tuple[str, ...]  # SHA-256 hex of each envelope, in order


@dataclass(frozen=True, slots=True)
class PullRequest:
    sender: str
    relay: str
    id: str
    created: datetime
    after: int
    wait: int


def envelope_digest(envelope: bytes) -> str:
    return hashlib.sha256(envelope).hexdigest()


def sign_deposit(
    identity: Identity, *, relay: str, request_id: str, created: datetime, envelopes: list[bytes]
) -> bytes:
    payload = encode_json(
        {
            "v": RELAY_REQUEST_VERSION,
            "relay": relay,
            "from": identity.name,
            "id": request_id,
            "created": format_time(created),
            "envelopes": [envelope_digest(e) for e in envelopes],
        }
    )
    return identity.signing.sign(Purpose.RELAY_DEPOSIT, payload)


def sign_pull(
    identity: Identity, *, relay: str, request_id: str, created: datetime, after: int, wait: int
) -> bytes:
    payload = encode_json(
        {
            "v": RELAY_REQUEST_VERSION,
            "relay": relay,
            "from": identity.name,
            "id": request_id,
            "created": format_time(created),
            "after": after,
            "wait": wait,
        }
    )
    return identity.signing.sign(Purpose.RELAY_PULL, payload)


def claimed_sender(statement: bytes) -> str:
    """The ``from`` a request claims, WITHOUT checking it: only to choose the key to verify
    with. Never trust it before ``verify_deposit`` or ``verify_pull`` returns."""
    _label, _key_id, payload = peek_statement(statement)
    try:
        raw = msgspec.json.decode(payload, type=dict[str, object])
    except ValueError as e:  # msgspec.DecodeError, or UnicodeDecodeError for bad UTF-8
        raise WireError(f"relay request: not JSON ({e})") from e
    sender = raw.get("from")
    if not isinstance(sender, str):
        raise WireError("relay request: no 'from'")
    return check_name(sender)


def _check_common(
    *, v: int, relay: str, expected_relay: str, request_id: str, created: str, now: datetime
) -> datetime:
    if v != RELAY_REQUEST_VERSION:
        raise WireError(f"relay request version {v}", code=ErrorCode.BAD_VERSION)
    if relay != expected_relay:
        raise VerificationError(
            f"request made for relay {relay!r}, this is {expected_relay!r}",
            code=ErrorCode.WRONG_RECIPIENT,
        )
    check_uuid(request_id, what="relay request id")
    moment = parse_time(created, what="relay request created")
    if abs(now - moment) > timedelta(seconds=MAX_REQUEST_SKEW_S):
        raise ProtocolError(
            f"relay request made at {created}, more than {MAX_REQUEST_SKEW_S:.0f}s from the "
            "relay's clock (a replay, or a clock that is off)",
            code=ErrorCode.REPLAY_CONFLICT,
        )
    return moment


def verify_deposit(
    statement: bytes,
    signer: SigningPublicKey,
    *,
    sender: str,
    relay: str,
    envelopes: list[bytes],
    now: datetime,
) -> DepositRequest:
    """Steps: 1. signature (label ``relay-deposit``, the sender's card key); 2. strict payload;
    3. version, relay name, id, time; 4. ``from`` is the sender whose key verified; 5. the
    listed digests are exactly those of ``envelopes``, in order."""
    checked = verify_statement(statement, Purpose.RELAY_DEPOSIT, signer)  # 1
    payload = decode_json(checked.payload, _DepositPayload, what="relay deposit")  # 2
    created = _check_common(  # 3
        v=payload.v,
        relay=payload.relay,
        expected_relay=relay,
        request_id=payload.id,
        created=payload.created,
        now=now,
    )
    if payload.sender != sender:  # 4
        raise VerificationError("deposit signed for another sender", code=ErrorCode.HEADER_MISMATCH)
    if len(payload.envelopes) > MAX_BATCH_ENVELOPES:
        raise WireError(f"more than {MAX_BATCH_ENVELOPES} envelopes in one deposit")
    if payload.envelopes != [envelope_digest(e) for e in envelopes]:  # 5
        raise VerificationError(
            "the envelopes are not the ones the deposit request signed",
            code=ErrorCode.HEADER_MISMATCH,
        )
    return DepositRequest(
        sender=payload.sender,
        relay=payload.relay,
        id=payload.id,
        created=created,
        digests=tuple(payload.envelopes),
    )


def verify_pull(
    statement: bytes, signer: SigningPublicKey, *, sender: str, relay: str, now: datetime
) -> PullRequest:
    """Steps: 1. signature (label ``relay-pull``); 2. strict payload; 3. version, relay name, id,
    time; 4. ``from`` is the signer; 5. ``after`` >= 0 and ``wait`` within 0..25 s."""
    checked = verify_statement(statement, Purpose.RELAY_PULL, signer)  # 1
    payload = decode_json(checked.payload, _PullPayload, what="relay pull")  # 2
    created = _check_common(  # 3
        v=payload.v,
        relay=payload.relay,
        expected_relay=relay,
        request_id=payload.id,
        created=payload.created,
        now=now,
    )
    if payload.sender != sender:  # 4
        raise VerificationError("pull signed for another sender", code=ErrorCode.HEADER_MISMATCH)
    if payload.after < 0 or not 0 <= payload.wait <= MAX_PULL_WAIT_S:  # 5
        raise WireError("relay pull: 'after' must be >= 0 and 'wait' within 0..25")
    return PullRequest(
        sender=payload.sender,
        relay=payload.relay,
        id=payload.id,
        created=created,
        after=payload.after,
        wait=payload.wait,
    )


__all__ = [
    "MAX_PULL_WAIT_S",
    "MAX_REQUEST_SKEW_S",
    "DepositRequest",
    "PullRequest",
    "claimed_sender",
    "envelope_digest",
    "sign_deposit",
    "sign_pull",
    "verify_deposit",
    "verify_pull",
]
