"""Key events: rotation and compromise revocation of a node's keys, and what they mean later.

A node's key **generation** is its composite signing key and its HPKE key, introduced by a card
signed by that signing key. Two signed key events move a node from one generation to the next
(docs/protocol.md §15):

**Rotation** (the old key is sound). Cross-signed: the new key signs the claim, the old key signs
the new key's signed claim, so the event proves possession of both::

    inner = new_key.sign("key-rotation-new", P)        P = {"v","name","old_key_id","new_key_id",
    rotation = old_key.sign("key-rotation", inner)          "card","effective","overlap_end"}

A verifier that trusts the old key checks the outer statement with it, then the inner one with the
new key named by the card inside ``P``. Peers accept both keys until ``overlap_end``, then only
the new one; statements the old key signed stay verifiable forever.

**Revocation** (the old key is compromised)::

    revocation = new_key.sign("key-revocation", R)    R = {"v","name","revoked_key_id",
                                                            "new_key_id","card","compromised_at",
                                                            "time"}

The old key's signature would prove nothing (the thief holds it too), so a revocation's authority
is split: *revoking* is accepted from anyone who can show the peer a statement under the revoked
key (the link carries it in a message the old key signs; whoever holds a key may declare it dead),
while the *new key* is accepted only after the peer's operators check its fingerprint again out
of band (``hotline peer confirm-key``). A thief's revocation therefore only kills the key it stole.

Everything here is pure: times and keys are arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import msgspec

from hotline.core.card import Card, Identity, check_name, parse_card_statement
from hotline.core.encoding import b64decode, b64encode, decode_json, encode_json, format_time
from hotline.core.encoding import parse_time as _parse_time
from hotline.core.keys import (
    KEY_ID_BYTES,
    Purpose,
    SigningPublicKey,
    peek_statement,
    verify_statement,
)
from hotline.errors import ErrorCode, HotlineError, VerificationError, WireError

KEY_EVENT_VERSION = 1
#: The longest overlap a rotation may announce: long enough for every queued envelope to arrive
#: (messages live 24 h by default), short enough that a retired key does not linger for months.
MAX_OVERLAP = timedelta(days=90)
#: A card inside a key event is a card statement (about 8 KB); bound it like a card file.
MAX_EVENT_CARD_BYTES = 64 * 1024
#: A key event file (``hotline keys revoke --out``): one statement in base64, a little JSON.
MAX_EVENT_FILE_BYTES = 128 * 1024
EVENT_FILE_VERSION = 1


class _RotationPayload(msgspec.Struct, forbid_unknown_fields=True):
    v: int
    name: str
    old_key_id: str
    new_key_id: str
    card: str
    effective: str
    overlap_end: str


class _RevocationPayload(msgspec.Struct, forbid_unknown_fields=True):
    v: int
    name: str
    revoked_key_id: str
    new_key_id: str
    card: str
    compromised_at: str
    time: str


@dataclass(frozen=True, slots=True)
class Rotation:
    """A verified rotation: ``name`` moved from ``old_key_id`` to the key of ``card``."""

    name: str
    old_key_id: bytes
    new_key_id: bytes
    card: Card
    effective: datetime
    overlap_end: datetime
    statement: bytes  # the outer statement, exactly as signed


@dataclass(frozen=True, slots=True)
class Revocation:
    """A revocation whose new-key signature verified. The new key is NOT yet trusted: that
    takes a fresh fingerprint check (``card.fingerprint``)."""

    name: str
    revoked_key_id: bytes
    new_key_id: bytes
    card: Card
    compromised_at: datetime
    time: datetime
    statement: bytes


class EventKind(StrEnum):
    ROTATION = "rotation"
    REVOCATION = "revocation"


def _time(text: str, what: str) -> datetime:
    try:
        return _parse_time(text, what=what)
    except HotlineError as e:
        raise WireError(f"{what}: {e.detail}") from e


def _key_id(text: str, what: str) -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError as e:
        raise WireError(f"{what} is not hex") from e
    if len(value) != KEY_ID_BYTES or value.hex() != text:
        raise WireError(f"{what} must be {2 * KEY_ID_BYTES} lowercase hex characters")
    return value


def _event_card(encoded: str, *, name: str, new_key_id: bytes, what: str) -> Card:
    """The new generation's card: self-signed by the new key, of this node, naming that key."""
    statement = b64decode(encoded, what=f"{what} card", limit=MAX_EVENT_CARD_BYTES)
    card = parse_card_statement(statement)
    if card.name != name:
        raise VerificationError(
            f"{what} carries a card of {card.name!r}, not {name!r}",
            code=ErrorCode.HEADER_MISMATCH,
        )
    if card.signing_key.key_id != new_key_id:
        raise VerificationError(
            f"{what} names new key {new_key_id.hex()}, its card holds "
            f"{card.signing_key.key_id.hex()}",
            code=ErrorCode.UNKNOWN_KEY,
        )
    return card


# -- rotation ---------------------------------------------------------------------------------


def make_rotation(
    old: Identity, new: Identity, new_card: Card, *, effective: datetime, overlap_end: datetime
) -> bytes:
    """The cross-signed rotation statement from ``old``'s key to ``new``'s (``new_card``)."""
    if old.name != new.name or new_card.name != new.name:
        raise WireError("a rotation keeps the node's name")
    if new_card.signing_key != new.signing.public:
        raise WireError("the new card must be the new key's own card")
    if not effective < overlap_end <= effective + MAX_OVERLAP:
        raise WireError(f"overlap must end after it starts and within {MAX_OVERLAP.days} days")
    payload = encode_json(
        {
            "v": KEY_EVENT_VERSION,
            "name": new.name,
            "old_key_id": old.signing.public.key_id.hex(),
            "new_key_id": new.signing.public.key_id.hex(),
            "card": b64encode(new_card.statement),
            "effective": format_time(effective),
            "overlap_end": format_time(overlap_end),
        }
    )
    inner = new.signing.sign(Purpose.KEY_ROTATION_NEW, payload)
    return old.signing.sign(Purpose.KEY_ROTATION, inner)


def verify_rotation(data: bytes, *, name: str, old_key: SigningPublicKey) -> Rotation:
    """Check a rotation of ``name`` away from ``old_key``; return it.

    Steps, in order (docs/protocol.md §15.3): 1. the outer statement is a ``key-rotation``
    signed by ``old_key`` (both signatures); 2. its payload is a statement labelled
    ``key-rotation-new``; 3. the inner payload parses strictly, ``v`` = 1; 4. ``name`` is the
    expected node; 5. ``old_key_id`` names ``old_key``; 6. the card verifies (self-signed), is of
    ``name`` and holds ``new_key_id``, which differs from the old one; 7. the inner statement is
    signed by that new key (both signatures); 8. ``effective`` < ``overlap_end`` <=
    ``effective`` + 90 days.
    """
    outer = verify_statement(data, Purpose.KEY_ROTATION, old_key)  # 1
    label, inner_key_id, unverified = peek_statement(outer.payload)  # 2
    if label != Purpose.KEY_ROTATION_NEW.value:
        raise VerificationError(
            f"rotation wraps a {label!r} statement, expected 'key-rotation-new'",
            code=ErrorCode.WRONG_PURPOSE,
        )
    payload = decode_json(unverified, _RotationPayload, what="rotation")  # 3
    if payload.v != KEY_EVENT_VERSION:
        raise WireError(f"rotation version {payload.v}", code=ErrorCode.BAD_VERSION)
    _check_event_name(payload.name, name, "rotation")  # 4
    old_key_id = _key_id(payload.old_key_id, "old_key_id")  # 5
    if old_key_id != old_key.key_id:
        raise VerificationError(
            f"rotation away from key {payload.old_key_id}, expected {old_key.key_id.hex()}",
            code=ErrorCode.UNKNOWN_KEY,
        )
    new_key_id = _key_id(payload.new_key_id, "new_key_id")  # 6
    if new_key_id == old_key_id:
        raise WireError("a rotation must introduce another key")
    card = _event_card(payload.card, name=name, new_key_id=new_key_id, what="rotation")
    if inner_key_id != new_key_id:
        raise VerificationError(
            "the rotation's inner statement is not signed by the new key",
            code=ErrorCode.UNKNOWN_KEY,
        )
    verify_statement(outer.payload, Purpose.KEY_ROTATION_NEW, card.signing_key)  # 7
    effective = _time(payload.effective, "rotation effective")  # 8
    overlap_end = _time(payload.overlap_end, "rotation overlap_end")
    if not effective < overlap_end <= effective + MAX_OVERLAP:
        raise WireError(f"rotation overlap must be positive and at most {MAX_OVERLAP.days} days")
    return Rotation(name, old_key_id, new_key_id, card, effective, overlap_end, data)


# -- revocation -------------------------------------------------------------------------------


def make_revocation(
    new: Identity,
    new_card: Card,
    *,
    revoked_key_id: bytes,
    compromised_at: datetime,
    time: datetime,
) -> bytes:
    """A revocation of ``revoked_key_id`` as of ``compromised_at``, signed by the new key."""
    if new_card.name != new.name or new_card.signing_key != new.signing.public:
        raise WireError("the new card must be the new key's own card")
    if revoked_key_id == new.signing.public.key_id or len(revoked_key_id) != KEY_ID_BYTES:
        raise WireError("a revocation names another key, by its 16-byte key id")
    if compromised_at > time:
        raise WireError("a key cannot be declared compromised as of a time still to come")
    payload = encode_json(
        {
            "v": KEY_EVENT_VERSION,
            "name": new.name,
            "revoked_key_id": revoked_key_id.hex(),
            "new_key_id": new.signing.public.key_id.hex(),
            "card": b64encode(new_card.statement),
            "compromised_at": format_time(compromised_at),
            "time": format_time(time),
        }
    )
    return new.signing.sign(Purpose.KEY_REVOCATION, payload)


def verify_revocation(data: bytes, *, name: str) -> Revocation:
    """Check a revocation by ``name``; return it (its new key still needs confirming).

    Steps (docs/protocol.md §15.4): 1. the statement is a ``key-revocation`` (label); 2. the
    payload parses strictly, ``v`` = 1; 3. ``name`` is the expected node; 4. the card verifies,
    is of ``name`` and holds ``new_key_id``; 5. the statement is signed by that new key (both
    signatures); 6. ``revoked_key_id`` is another key; 7. ``compromised_at`` <= ``time``.
    Whether ``revoked_key_id`` is a key of this peer is for the caller (it knows the keys).
    """
    label, key_id, unverified = peek_statement(data)
    if label != Purpose.KEY_REVOCATION.value:  # 1
        raise VerificationError(
            f"statement signed for {label!r}, expected 'key-revocation'",
            code=ErrorCode.WRONG_PURPOSE,
        )
    payload = decode_json(unverified, _RevocationPayload, what="revocation")  # 2
    if payload.v != KEY_EVENT_VERSION:
        raise WireError(f"revocation version {payload.v}", code=ErrorCode.BAD_VERSION)
    _check_event_name(payload.name, name, "revocation")  # 3
    new_key_id = _key_id(payload.new_key_id, "new_key_id")  # 4
    card = _event_card(payload.card, name=name, new_key_id=new_key_id, what="revocation")
    if key_id != new_key_id:
        raise VerificationError(
            "a revocation is signed by the new key it introduces", code=ErrorCode.UNKNOWN_KEY
        )
    verify_statement(data, Purpose.KEY_REVOCATION, card.signing_key)  # 5
    revoked_key_id = _key_id(payload.revoked_key_id, "revoked_key_id")  # 6
    if revoked_key_id == new_key_id:
        raise WireError("a revocation cannot revoke the key that signs it")
    compromised_at = _time(payload.compromised_at, "revocation compromised_at")  # 7
    time = _time(payload.time, "revocation time")
    if compromised_at > time:
        raise WireError("compromised_at is later than the revocation itself")
    return Revocation(name, revoked_key_id, new_key_id, card, compromised_at, time, data)


def _check_event_name(found: str, expected: str, what: str) -> None:
    try:
        check_name(found)
    except HotlineError as e:
        raise WireError(f"{what} name: {e.detail}") from e
    if found != expected:
        raise VerificationError(
            f"{what} of {found!r}, expected {expected!r}", code=ErrorCode.HEADER_MISMATCH
        )


def event_kind(data: bytes) -> EventKind:
    """Which key event ``data`` claims to be (unverified: only to choose the verifier)."""
    label, _key_id, _payload = peek_statement(data)
    if label == Purpose.KEY_ROTATION.value:
        return EventKind.ROTATION
    if label == Purpose.KEY_REVOCATION.value:
        return EventKind.REVOCATION
    raise VerificationError(f"{label!r} is not a key event", code=ErrorCode.WRONG_PURPOSE)


class _EventFile(msgspec.Struct, forbid_unknown_fields=True):
    hotline_key_event: int
    statement: str


def event_file(statement: bytes) -> bytes:
    """A key event as a file an operator hands over out of band: ``{"hotline_key_event": 1,
    "statement": "<base64>"}``."""
    return encode_json({"hotline_key_event": EVENT_FILE_VERSION, "statement": b64encode(statement)})


def parse_event_file(data: bytes) -> bytes:
    """The statement of a key event file (not yet verified: ``verify_revocation`` does that)."""
    wrapper = decode_json(data, _EventFile, what="key event file", limit=MAX_EVENT_FILE_BYTES)
    if wrapper.hotline_key_event != EVENT_FILE_VERSION:
        raise WireError(
            f"key event file version {wrapper.hotline_key_event}", code=ErrorCode.BAD_VERSION
        )
    return b64decode(wrapper.statement, what="key event statement", limit=MAX_EVENT_FILE_BYTES)


# -- what a key may still sign ----------------------------------------------------------------


class KeyState(StrEnum):
    """A peer key's standing at a receiver (``peer_keys.state``)."""

    ACTIVE = "active"  # the peer's current key
    ROTATED = "rotated"  # replaced by a rotation: valid until the overlap ends
    REVOKED = "revoked"  # declared compromised: refused from now on
    PENDING = "pending"  # announced by a revocation, waiting for the fingerprint check
    REJECTED = "rejected"  # a pending key that another confirmed key replaced


@dataclass(frozen=True, slots=True)
class KeyStanding:
    key_id: bytes
    state: KeyState
    valid_until: datetime | None = None  # ROTATED: end of the overlap
    revoked_at: datetime | None = None  # REVOKED: the compromise time as the receiver holds it


def check_key_use(
    standing: KeyStanding, *, now: datetime, signed_at: datetime, revocation: bool = False
) -> None:
    """May a new statement signed by this key, claiming ``signed_at``, be accepted ``now``?

    ACTIVE: yes. ROTATED: while ``now`` and ``signed_at`` are both within the overlap
    (``key_expired`` after). REVOKED: never, whatever time the statement claims, because the
    thief chooses that claim (``key_revoked``); the one exception is a carrier of another
    revocation (``revocation=True``): revoking again can only lower trust, and the true owner may
    need it to answer a thief's revocation with its own new key. PENDING and REJECTED:
    ``key_unconfirmed`` until an operator confirms the fingerprint.
    """
    if standing.state is KeyState.ACTIVE:
        return
    key = standing.key_id.hex()
    if standing.state is KeyState.ROTATED:
        until = standing.valid_until
        if until is not None and now <= until and signed_at <= until:
            return
        raise VerificationError(
            f"key {key} was rotated out; its overlap ended "
            f"{format_time(until) if until else 'already'}",
            code=ErrorCode.KEY_EXPIRED,
        )
    if standing.state is KeyState.REVOKED:
        if revocation:
            return
        since = format_time(standing.revoked_at) if standing.revoked_at else "unknown"
        raise VerificationError(
            f"key {key} is revoked (compromised as of {since})", code=ErrorCode.KEY_REVOKED
        )
    raise VerificationError(
        f"key {key} is not confirmed: check its fingerprint out of band (hotline peer confirm-key)",
        code=ErrorCode.KEY_UNCONFIRMED,
    )


# -- a node's key history, replayed offline (audit bundles) -----------------------------------


@dataclass(frozen=True, slots=True)
class KeyPeriod:
    """One key of a node and when it could sign, as its history shows."""

    key: SigningPublicKey
    card: Card
    valid_until: datetime | None = None  # a rotated key: end of its overlap
    compromised_at: datetime | None = None  # a revoked key
    via: EventKind | None = None  # how this key was introduced (None: the first card)

    @property
    def key_id(self) -> bytes:
        return self.key.key_id


def replay_history(first_card: Card, events: list[bytes]) -> list[KeyPeriod]:
    """Walk a node's key events from its first card; return its keys, oldest first.

    Each rotation must be signed by the key then current (§15.3); each revocation must name the
    key then current or an earlier one, and is taken on the authority of the party that kept it
    (its new key was confirmed out of band by that party; an offline reader cannot redo the
    telephone call, and the exporter's signature over the bundle vouches for it).
    """
    periods = [KeyPeriod(first_card.signing_key, first_card)]
    for i, data in enumerate(events):
        current = periods[-1]
        try:
            kind = event_kind(data)
            if kind is EventKind.ROTATION:
                rotation = verify_rotation(data, name=first_card.name, old_key=current.key)
                periods[-1] = KeyPeriod(
                    current.key,
                    current.card,
                    valid_until=rotation.overlap_end,
                    compromised_at=current.compromised_at,
                    via=current.via,
                )
                periods.append(
                    KeyPeriod(rotation.card.signing_key, rotation.card, via=EventKind.ROTATION)
                )
            else:
                revocation = verify_revocation(data, name=first_card.name)
                index = next(
                    (j for j, p in enumerate(periods) if p.key_id == revocation.revoked_key_id),
                    None,
                )
                if index is None:
                    raise VerificationError(
                        f"revokes key {revocation.revoked_key_id.hex()}, not one of "
                        f"{first_card.name}'s",
                        code=ErrorCode.UNKNOWN_KEY,
                    )
                old = periods[index]
                periods[index] = KeyPeriod(
                    old.key,
                    old.card,
                    valid_until=old.valid_until,
                    compromised_at=revocation.compromised_at,
                    via=old.via,
                )
                if revocation.new_key_id != periods[-1].key_id:
                    periods.append(
                        KeyPeriod(
                            revocation.card.signing_key, revocation.card, via=EventKind.REVOCATION
                        )
                    )
        except HotlineError as e:
            raise type(e)(f"key event {i}: {e.detail}", code=e.code) from e
    return periods


def signer_at(
    periods: list[KeyPeriod], key_id: bytes, signed_at: datetime | None
) -> tuple[KeyPeriod, str | None]:
    """The period of ``key_id`` and, if its use at ``signed_at`` is doubtful, why.

    A key rotated out signing after its overlap, or a revoked key signing at or after the
    compromise, gives a reason; an offline reader reports such statements as suspect (the
    receiver accepted them before it knew, or they are forgeries made with the stolen key).
    """
    for period in periods:
        if period.key_id == key_id:
            if signed_at is not None:
                if period.compromised_at is not None and signed_at >= period.compromised_at:
                    return period, (
                        f"signed {format_time(signed_at)} by key {key_id.hex()}, compromised "
                        f"as of {format_time(period.compromised_at)}"
                    )
                if period.valid_until is not None and signed_at > period.valid_until:
                    return period, (
                        f"signed {format_time(signed_at)} by key {key_id.hex()}, after its "
                        f"overlap ended {format_time(period.valid_until)}"
                    )
            return period, None
    raise VerificationError(f"key {key_id.hex()} is not in the history", code=ErrorCode.UNKNOWN_KEY)


__all__ = [
    "KEY_EVENT_VERSION",
    "MAX_OVERLAP",
    "EventKind",
    "KeyPeriod",
    "KeyStanding",
    "KeyState",
    "Revocation",
    "Rotation",
    "check_key_use",
    "event_file",
    "event_kind",
    "make_revocation",
    "make_rotation",
    "parse_event_file",
    "replay_history",
    "signer_at",
    "verify_revocation",
    "verify_rotation",
]
