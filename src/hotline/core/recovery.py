"""Recovering a lost tail from the peer as verified evidence (pure; no I/O, no clock reads).

A node restored from an old backup has lost the statements of its link that came after the
backup, while the peer still holds them (docs/operations.md, "Restore"): the peer's sequenced
envelopes to us that we had receipted (its outbox is done with them), and our own to the peer
(the peer holds our signed plaintext, having opened them). The node cannot put them back into
its own log (the order is not recoverable, and re-signing would fork the log), but it can fetch
them as **evidence**: each statement signed by its author, with an inclusion proof in the peer's
log against a signed tree head of the peer that extends the largest head of the peer we hold.

Wire form (docs/protocol.md §7.11):

- the request is a signed statement (label ``recovery-request``) of the requester, naming the
  responder, a fresh id and time, from which sequence number on it wants each direction, and the
  size of the largest head of the responder's log it holds;
- the answer is a signed statement (label ``recovery``) of the responder, sealed with HPKE to the
  requester's card key, with ``info`` = ``RECOVERY_INFO_DOMAIN`` + SHA-256 of the request: only
  the requester can read it (it carries message contents), and it answers exactly that request.

Everything in an answer is untrusted until :func:`verify_answer` returns: the signature over the
whole answer, the peer's tree head and its consistency with the head we hold, and per item the
author's signature (the peer's key for its statements, one of our own keys for ours), the
signed ``from``/``to``/``seq`` against the item, and the inclusion proof of the statement's
leaf. One failing check refuses the whole answer; a statement signed by a key we do not know
(a key of ours made after the backup) is not verifiable and is listed apart, never as verified.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import msgspec
from cryptography.exceptions import InvalidTag

from hotline.core import merkle
from hotline.core.card import NAME_PATTERN, Identity, check_name
from hotline.core.encoding import (
    MAX_PAYLOAD_BYTES,
    b64decode,
    b64encode,
    decode_json,
    encode_json,
    format_time,
    parse_time,
)
from hotline.core.envelope import (
    Kind,
    MessagePayload,
    ReceiptKind,
    ReceiptPayload,
    check_uuid,
    parse_payload,
)
from hotline.core.keys import (
    HPKE_SUITE,
    EncryptionPublicKey,
    Purpose,
    SigningPublicKey,
    peek_statement,
    verify_statement,
)
from hotline.core.treehead import TreeHead, verify_tree_head
from hotline.errors import ErrorCode, ProtocolError, VerificationError, WireError

RECOVERY_VERSION = 1
RECOVERY_INFO_DOMAIN = b"hotline recovery v1\x00"
#: A request made further than this from the responder's clock is refused.
MAX_REQUEST_SKEW_S = 300.0
#: Largest request body: a statement with a small payload (a few hundred bytes of JSON).
MAX_REQUEST_BYTES = 16 * 1024
#: Statements in one answer, at most: bounds the signatures and proofs one answer costs to check.
MAX_ANSWER_ITEMS = 128
#: Sequence numbers one answer may list as not sent (too large for an answer).
MAX_ANSWER_OMITTED = 128
#: Largest sealed answer a requester reads: a statement whose payload is at most
#: MAX_PAYLOAD_BYTES, its signatures and label, HPKE's 1,136 bytes, and room to spare.
MAX_ANSWER_BYTES = MAX_PAYLOAD_BYTES + 16 * 1024
#: What a responder puts into one answer's items (their base64 and proofs), so that the
#: payload stays under MAX_PAYLOAD_BYTES with the head, the consistency proof and the framing.
ANSWER_ITEMS_BUDGET = MAX_PAYLOAD_BYTES - 48 * 1024
#: One signed head in an answer (a statement of ~3.5 KB, in base64).
MAX_HEAD_BYTES = 64 * 1024
#: One recovered statement: a statement's payload is at most MAX_PAYLOAD_BYTES.
MAX_ITEM_STATEMENT_BYTES = MAX_PAYLOAD_BYTES + 8 * 1024


class Direction(StrEnum):
    """Seen from the requester: ``yours`` are the responder's statements to the requester,
    ``mine`` the requester's own to the responder."""

    YOURS = "yours"
    MINE = "mine"


class OmittedReason(StrEnum):
    TOO_LARGE = "too_large"  # the statement alone does not fit an answer
    NOT_LOGGED = "not_logged"  # the responder holds it but finds no leaf of it in its log


# --- wire shapes -------------------------------------------------------------------------------


class _RequestPayload(msgspec.Struct, forbid_unknown_fields=True):
    v: int
    id: str
    to: str
    created: str
    yours_after: int
    mine_after: int
    known_size: int
    from_: str = msgspec.field(name="from")


class _Item(msgspec.Struct, forbid_unknown_fields=True):
    dir: str
    seq: int
    statement: str
    index: int
    proof: list[str]


class _Omitted(msgspec.Struct, forbid_unknown_fields=True):
    dir: str
    seq: int
    reason: str


class _AnswerPayload(msgspec.Struct, forbid_unknown_fields=True):
    v: int
    to: str
    request: str
    tree_head: str
    consistency: list[str]
    yours_last: int
    mine_last: int
    items: list[_Item]
    omitted: list[_Omitted]
    more: bool
    from_: str = msgspec.field(name="from")


@dataclass(frozen=True, slots=True)
class Request:
    """A verified request: who asks, for what."""

    requester: str
    responder: str
    id: str
    created: datetime
    yours_after: int
    mine_after: int
    known_size: int
    statement: bytes

    @property
    def digest(self) -> bytes:
        return request_digest(self.statement)


def request_digest(statement: bytes) -> bytes:
    return hashlib.sha256(statement).digest()


def sign_request(
    identity: Identity,
    *,
    responder: str,
    request_id: str,
    created: datetime,
    yours_after: int,
    mine_after: int,
    known_size: int,
) -> bytes:
    payload = encode_json(
        {
            "v": RECOVERY_VERSION,
            "id": request_id,
            "from": identity.name,
            "to": responder,
            "created": format_time(created),
            "yours_after": yours_after,
            "mine_after": mine_after,
            "known_size": known_size,
        }
    )
    return identity.signing.sign(Purpose.RECOVERY_REQUEST, payload)


def claimed_requester(statement: bytes) -> str:
    """The ``from`` a request claims, WITHOUT checking it: only to choose the key to verify
    with. Never trust it before :func:`verify_request` returns."""
    label, _key_id, payload = peek_statement(statement)
    if label != Purpose.RECOVERY_REQUEST.value:
        raise VerificationError(
            f"statement signed for {label[:32]!r}, expected 'recovery-request'",
            code=ErrorCode.WRONG_PURPOSE,
        )
    try:
        raw = msgspec.json.decode(payload, type=dict[str, object])
    except ValueError as e:  # msgspec.DecodeError, or UnicodeDecodeError for bad UTF-8
        raise WireError(f"recovery request: not JSON ({e})") from e
    sender = raw.get("from")
    if not isinstance(sender, str):
        raise WireError("recovery request: no 'from'")
    return check_name(sender)


def verify_request(
    statement: bytes,
    signer: SigningPublicKey,
    *,
    requester: str,
    responder: str,
    now: datetime,
) -> Request:
    """Steps: 1. size; 2. signature (label ``recovery-request``, the requester's key); 3. strict
    payload, version; 4. ``from`` is the requester whose key verified, ``to`` is this node;
    5. id and time (within MAX_REQUEST_SKEW_S of our clock); 6. counts not negative."""
    if len(statement) > MAX_REQUEST_BYTES:  # 1
        raise WireError(
            f"recovery request of {len(statement)} bytes over {MAX_REQUEST_BYTES}",
            code=ErrorCode.TOO_LARGE,
        )
    checked = verify_statement(statement, Purpose.RECOVERY_REQUEST, signer)  # 2
    payload = decode_json(checked.payload, _RequestPayload, what="recovery request")  # 3
    if payload.v != RECOVERY_VERSION:
        raise WireError(f"recovery request version {payload.v}", code=ErrorCode.BAD_VERSION)
    if payload.from_ != requester:  # 4
        raise VerificationError(
            "recovery request signed for another sender", code=ErrorCode.HEADER_MISMATCH
        )
    if payload.to != responder:
        raise VerificationError(
            f"recovery request for {payload.to[:64]!r}, this node is {responder!r}",
            code=ErrorCode.WRONG_RECIPIENT,
        )
    check_uuid(payload.id, what="recovery request id")  # 5
    created = parse_time(payload.created, what="recovery request created")
    if abs(now - created) > timedelta(seconds=MAX_REQUEST_SKEW_S):
        raise ProtocolError(
            f"recovery request made at {payload.created}, more than "
            f"{MAX_REQUEST_SKEW_S:.0f}s from our clock (a replay, or a clock that is off)",
            code=ErrorCode.REPLAY_CONFLICT,
        )
    for name, value in (
        ("yours_after", payload.yours_after),
        ("mine_after", payload.mine_after),
        ("known_size", payload.known_size),
    ):
        if not 0 <= value <= merkle.MAX_TREE_SIZE:  # 6
            raise WireError(f"recovery request: {name} {value} out of range")
    return Request(
        requester=payload.from_,
        responder=payload.to,
        id=payload.id,
        created=created,
        yours_after=payload.yours_after,
        mine_after=payload.mine_after,
        known_size=payload.known_size,
        statement=statement,
    )


# --- the responder's side --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AnswerItem:
    """A statement the responder holds, where it logged it, and the proof of that leaf."""

    direction: Direction
    seq: int
    statement: bytes
    index: int
    proof: tuple[bytes, ...]

    @staticmethod
    def cost(statement_bytes: int, proof_hashes: int) -> int:
        """At most what an item adds to an answer's payload: its statement and proof in base64
        (a hash is 44 characters, quoted, with a comma) and the item's framing."""
        return (statement_bytes + 2) // 3 * 4 + proof_hashes * 48 + 128

    def encoded_size(self) -> int:
        return self.cost(len(self.statement), len(self.proof))


@dataclass(frozen=True, slots=True)
class Omitted:
    direction: Direction
    seq: int
    reason: OmittedReason


def seal_answer(
    identity: Identity,
    request: Request,
    *,
    recipient_key: EncryptionPublicKey,
    tree_head: TreeHead,
    consistency: list[bytes],
    yours_last: int,
    mine_last: int,
    items: list[AnswerItem],
    omitted: list[Omitted],
    more: bool,
) -> bytes:
    """Sign the answer (label ``recovery``) and seal it to the requester, bound to its request."""
    if len(items) > MAX_ANSWER_ITEMS or len(omitted) > MAX_ANSWER_OMITTED:
        raise WireError("a recovery answer holds too many items", code=ErrorCode.TOO_LARGE)
    payload = encode_json(
        {
            "v": RECOVERY_VERSION,
            "from": identity.name,
            "to": request.requester,
            "request": request.digest.hex(),
            "tree_head": b64encode(tree_head.statement),
            "consistency": [b64encode(h) for h in consistency],
            "yours_last": yours_last,
            "mine_last": mine_last,
            "items": [
                {
                    "dir": i.direction.value,
                    "seq": i.seq,
                    "statement": b64encode(i.statement),
                    "index": i.index,
                    "proof": [b64encode(h) for h in i.proof],
                }
                for i in items
            ],
            "omitted": [
                {"dir": o.direction.value, "seq": o.seq, "reason": o.reason.value} for o in omitted
            ],
            "more": more,
        }
    )
    statement = identity.signing.sign(Purpose.RECOVERY, payload)
    return HPKE_SUITE.encrypt(
        statement, recipient_key.hpke_key(), info=RECOVERY_INFO_DOMAIN + request.digest
    )


# --- the requester's side --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Asked:
    """What the requester asked, and what it needs to check the answer."""

    responder: str
    request: bytes  # the signed request statement, exactly as sent
    yours_after: int
    mine_after: int
    #: The largest head of the responder's log the requester holds (0 and the empty root if none).
    known_size: int
    known_root: bytes


@dataclass(frozen=True, slots=True)
class Recovered:
    """A statement of the link that passed every check of :func:`verify_answer`."""

    direction: Direction
    seq: int
    id: str
    kind: str  # "message" or "receipt" (an ACKNOWLEDGED receipt)
    statement: bytes
    payload: MessagePayload | ReceiptPayload
    key_id: bytes  # the author's key that signed it
    index: int  # its leaf in the responder's log
    proof: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Unverifiable:
    direction: Direction
    seq: int
    reason: str


@dataclass(frozen=True, slots=True)
class Answer:
    head: TreeHead
    items: tuple[Recovered, ...]
    omitted: tuple[Omitted, ...]
    unverifiable: tuple[Unverifiable, ...]
    yours_last: int
    mine_last: int
    more: bool


def open_answer(identity: Identity, data: bytes, asked: Asked) -> bytes:
    """Steps 1-2 of :func:`verify_answer`: size, then HPKE open bound to our request."""
    if len(data) > MAX_ANSWER_BYTES:
        raise WireError(
            f"recovery answer of {len(data)} bytes over {MAX_ANSWER_BYTES}",
            code=ErrorCode.TOO_LARGE,
        )
    info = RECOVERY_INFO_DOMAIN + request_digest(asked.request)
    for key in (identity.decryption, *identity.previous):
        try:
            return HPKE_SUITE.decrypt(data, key.hpke_key(), info=info)
        except (InvalidTag, ValueError):
            continue
    raise VerificationError(
        "recovery answer does not open (not sealed to us, not for this request, or altered)",
        code=ErrorCode.DECRYPT_FAILED,
    )


def _key_for(keys: Mapping[bytes, SigningPublicKey], statement: bytes) -> SigningPublicKey | None:
    return keys.get(peek_statement(statement)[1])


def parse_answer_payload(data: bytes) -> _AnswerPayload:
    """Step 4's parse: strict JSON of the answer's shape, counts bounded. A parser of untrusted
    bytes in its own right (property-tested without a signature per input)."""
    payload = decode_json(data, _AnswerPayload, what="recovery answer")
    if payload.v != RECOVERY_VERSION:
        raise WireError(f"recovery answer version {payload.v}", code=ErrorCode.BAD_VERSION)
    if len(payload.items) > MAX_ANSWER_ITEMS:
        raise WireError(
            f"recovery answer holds {len(payload.items)} items, at most {MAX_ANSWER_ITEMS}",
            code=ErrorCode.TOO_LARGE,
        )
    if len(payload.omitted) > MAX_ANSWER_OMITTED:
        raise WireError(
            f"recovery answer omits {len(payload.omitted)}, at most {MAX_ANSWER_OMITTED}",
            code=ErrorCode.TOO_LARGE,
        )
    if len(payload.consistency) > merkle.MAX_PROOF_HASHES:
        raise WireError("recovery answer: consistency proof too long", code=ErrorCode.TOO_LARGE)
    for name, value in (("yours_last", payload.yours_last), ("mine_last", payload.mine_last)):
        if not 0 <= value <= merkle.MAX_TREE_SIZE:
            raise WireError(f"recovery answer: {name} {value} out of range")
    for item in payload.items:
        if item.dir not in (Direction.YOURS, Direction.MINE):
            raise WireError(f"recovery answer: direction {item.dir[:16]!r}")
        if not 1 <= item.seq <= merkle.MAX_TREE_SIZE:
            raise WireError(f"recovery answer: sequence number {item.seq} out of range")
        if not 0 <= item.index < merkle.MAX_TREE_SIZE:
            raise WireError(f"recovery answer: leaf index {item.index} out of range")
        if len(item.proof) > merkle.MAX_PROOF_HASHES:
            raise WireError("recovery answer: inclusion proof too long", code=ErrorCode.TOO_LARGE)
    for omitted in payload.omitted:
        if omitted.dir not in (Direction.YOURS, Direction.MINE):
            raise WireError(f"recovery answer: direction {omitted.dir[:16]!r}")
        if omitted.reason not in (OmittedReason.TOO_LARGE, OmittedReason.NOT_LOGGED):
            raise WireError(f"recovery answer: omitted for {omitted.reason[:32]!r}")
        if not 1 <= omitted.seq <= merkle.MAX_TREE_SIZE:
            raise WireError(f"recovery answer: sequence number {omitted.seq} out of range")
    return payload


def verify_answer(
    identity: Identity,
    data: bytes,
    asked: Asked,
    *,
    responder_keys: Mapping[bytes, SigningPublicKey],
    own_keys: Mapping[bytes, SigningPublicKey],
) -> Answer:
    """Check an answer to ``asked``; every check, in order (docs/protocol.md §7.11):

    1. size at most MAX_ANSWER_BYTES; 2. HPKE open with our key, bound to the request's hash;
    3. a statement labelled ``recovery`` signed by a key of the responder; 4. strict payload,
    counts bounded; ``from``/``to`` are the responder and us, ``request`` the hash of ours;
    5. the tree head is the responder's, signed by its key, of a size at least ``known_size``,
    and the consistency proof holds from the head we hold to it; 6. per item: the direction's
    sequence numbers ascend strictly and lie above what we asked from; the statement is a
    message or an ACKNOWLEDGED receipt signed by its author's key (the responder's for
    ``yours``, ours for ``mine``; a key we do not know makes the item unverifiable, listed
    apart), whose signed ``from``, ``to`` and ``seq`` are the item's; its leaf index lies in the
    head's tree and the inclusion proof of its leaf hash holds against the head's root.
    Any failure raises (the whole answer is refused); nothing is returned half-checked.
    """
    plaintext = open_answer(identity, data, asked)  # 1-2
    signer = _key_for(responder_keys, plaintext)  # 3
    if signer is None:
        raise VerificationError(
            "recovery answer signed by a key the responder does not hold",
            code=ErrorCode.UNKNOWN_KEY,
        )
    statement = verify_statement(plaintext, Purpose.RECOVERY, signer)
    payload = parse_answer_payload(statement.payload)  # 4
    if (payload.from_, payload.to) != (asked.responder, identity.name):
        raise VerificationError(
            "recovery answer names another responder or requester", code=ErrorCode.HEADER_MISMATCH
        )
    if payload.request != request_digest(asked.request).hex():
        raise VerificationError(
            "recovery answer for another request", code=ErrorCode.HEADER_MISMATCH
        )
    head_statement = b64decode(payload.tree_head, what="tree head", limit=MAX_HEAD_BYTES)  # 5
    head_key = _key_for(responder_keys, head_statement)
    if head_key is None:
        raise VerificationError(
            "recovery answer's tree head signed by an unknown key", code=ErrorCode.UNKNOWN_KEY
        )
    head = verify_tree_head(head_statement, head_key, log=asked.responder)
    if head.size < asked.known_size:
        raise VerificationError(
            f"{asked.responder}'s head of size {head.size} is smaller than its head of size "
            f"{asked.known_size} we hold",
            code=ErrorCode.BAD_PROOF,
        )
    consistency = [
        b64decode(h, what="proof hash", size=merkle.HASH_SIZE) for h in payload.consistency
    ]
    merkle.verify_consistency(
        old_size=asked.known_size,
        new_size=head.size,
        old_root=asked.known_root,
        new_root=head.root,
        proof=consistency,
    )
    after = {Direction.YOURS: asked.yours_after, Direction.MINE: asked.mine_after}
    recovered: list[Recovered] = []
    unverifiable: list[Unverifiable] = []
    for item in payload.items:  # 6
        direction = Direction(item.dir)
        if item.seq <= after[direction]:
            raise WireError(
                f"recovery answer: {direction} seq {item.seq} is not above {after[direction]} "
                "(asked for, or listed before)"
            )
        after[direction] = item.seq
        data_item = b64decode(item.statement, what="statement", limit=MAX_ITEM_STATEMENT_BYTES)
        keys = responder_keys if direction is Direction.YOURS else own_keys
        key = _key_for(keys, data_item)
        if key is None:
            author = asked.responder if direction is Direction.YOURS else identity.name
            unverifiable.append(
                Unverifiable(direction, item.seq, f"signed by a key of {author} not known here")
            )
            continue
        recovered.append(_check_item(identity, asked, head, direction, item, data_item, key))
    asked_from = {Direction.YOURS: asked.yours_after, Direction.MINE: asked.mine_after}
    for omitted in payload.omitted:
        direction = Direction(omitted.dir)
        if omitted.seq <= asked_from[direction]:
            raise WireError(f"recovery answer omits {direction} seq {omitted.seq}, not asked for")
    return Answer(
        head=head,
        items=tuple(recovered),
        omitted=tuple(
            Omitted(Direction(o.dir), o.seq, OmittedReason(o.reason)) for o in payload.omitted
        ),
        unverifiable=tuple(unverifiable),
        yours_last=payload.yours_last,
        mine_last=payload.mine_last,
        more=payload.more,
    )


def _check_item(
    identity: Identity,
    asked: Asked,
    head: TreeHead,
    direction: Direction,
    item: _Item,
    data: bytes,
    key: SigningPublicKey,
) -> Recovered:
    label = peek_statement(data)[0]
    if label == Purpose.MESSAGE.value:
        checked = verify_statement(data, Purpose.MESSAGE, key)
        parsed = parse_payload(Kind.MESSAGE, checked.payload)
    elif label == Purpose.RECEIPT.value:
        checked = verify_statement(data, Purpose.RECEIPT, key)
        parsed = parse_payload(Kind.RECEIPT, checked.payload)
    else:
        raise VerificationError(
            f"recovered {direction} seq {item.seq} is signed for {label[:32]!r}, not a message "
            "or receipt",
            code=ErrorCode.WRONG_PURPOSE,
        )
    if isinstance(parsed, ReceiptPayload):
        if parsed.kind != ReceiptKind.ACKNOWLEDGED:
            raise WireError(f"recovered {direction} seq {item.seq}: not a sequenced receipt")
        seq = parsed.seq
    elif isinstance(parsed, MessagePayload):
        seq = parsed.seq
    else:  # parse_payload of these two kinds gives nothing else
        raise WireError("recovered statement of an unexpected kind")
    author, reader = (
        (asked.responder, identity.name)
        if direction is Direction.YOURS
        else (identity.name, asked.responder)
    )
    if (parsed.from_, parsed.to, seq) != (author, reader, item.seq):
        raise VerificationError(
            f"recovered {direction} seq {item.seq} is signed as {parsed.from_[:64]} -> "
            f"{parsed.to[:64]} seq {seq}",
            code=ErrorCode.HEADER_MISMATCH,
        )
    if not NAME_PATTERN.fullmatch(author):
        raise WireError("recovered statement's author is not a node name")
    # On the link the routing header's id (a UUID) must equal the signed one; here there is no
    # header, so the signed id is checked itself before it names a stored row.
    check_uuid(parsed.id, what=f"recovered {direction} seq {item.seq} id")
    if item.index >= head.size:
        raise VerificationError(
            f"recovered {direction} seq {item.seq}: leaf {item.index} is outside the head's "
            f"tree of {head.size}",
            code=ErrorCode.BAD_PROOF,
        )
    proof = tuple(b64decode(h, what="proof hash", size=merkle.HASH_SIZE) for h in item.proof)
    merkle.verify_inclusion(
        leaf_hash=merkle.leaf_hash(data),
        index=item.index,
        size=head.size,
        proof=list(proof),
        root=head.root,
    )
    return Recovered(
        direction=direction,
        seq=item.seq,
        id=parsed.id,
        kind="receipt" if isinstance(parsed, ReceiptPayload) else "message",
        statement=data,
        payload=parsed,
        key_id=checked.key_id,
        index=item.index,
        proof=proof,
    )


__all__ = [
    "ANSWER_ITEMS_BUDGET",
    "MAX_ANSWER_BYTES",
    "MAX_ANSWER_ITEMS",
    "MAX_ANSWER_OMITTED",
    "MAX_REQUEST_BYTES",
    "MAX_REQUEST_SKEW_S",
    "Answer",
    "AnswerItem",
    "Asked",
    "Direction",
    "Omitted",
    "OmittedReason",
    "Recovered",
    "Request",
    "Unverifiable",
    "claimed_requester",
    "open_answer",
    "parse_answer_payload",
    "request_digest",
    "seal_answer",
    "sign_request",
    "verify_answer",
    "verify_request",
]
