"""Envelopes: what crosses a link. Sign, then encrypt to the recipient; open in a fixed order.

Wire form (docs/protocol.md §3)::

    "HLE1" | u16 header_len | header (JSON) | HPKE ciphertext (enc || ct || tag)

The header ``{"v":1,"kind":...,"from":...,"to":...,"id":...}`` routes the envelope (a relay can
read it, nothing else). It is bound into the encryption through HPKE's ``info``
(``ENVELOPE_INFO_DOMAIN`` + every byte up to the ciphertext), so changing a routing byte makes
decryption fail. The plaintext is a signed statement (``hotline.core.keys``) whose payload repeats
``from``, ``to`` and ``id``; the receiver checks they agree with the header.

This module is pure: it takes "now", ids and keys as arguments and does no I/O.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import struct
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import msgspec
from cryptography.exceptions import InvalidTag

from hotline.core.card import NAME_PATTERN, Identity, check_name
from hotline.core.encoding import b64encode, decode_json, encode_json, format_time
from hotline.core.keys import (
    HPKE_SUITE,
    EncryptionPublicKey,
    Purpose,
    SigningPublicKey,
    Statement,
    peek_statement,
    verify_statement,
)
from hotline.errors import ErrorCode, HotlineError, VerificationError, WireError

ENVELOPE_MAGIC = b"HLE1"
ENVELOPE_INFO_DOMAIN = b"hotline envelope v1\x00"
PROTOCOL_VERSION = 1
#: Largest envelope a node accepts: a generous bound for formatted messages and batch receipts.
MAX_ENVELOPE_BYTES = 1024 * 1024
MAX_HEADER_BYTES = 1024
#: Largest batch in one request; bounds the memory and time one request can cost a node.
MAX_BATCH_ENVELOPES = 256
MAX_BATCH_BYTES = 16 * 1024 * 1024
BATCH_MAGIC = b"HLB1"
#: Receipts cover at most this many messages (one batch).
MAX_RECEIPT_ITEMS = MAX_BATCH_ENVELOPES
MAX_EXPIRED_LISTED = 1024
#: Witness cosignatures a heartbeat carries, at most (the latest of each witness).
MAX_COSIGNATURES_LISTED = 8


#: Operator names as signed into messages (author, releaser) and receipts.
OPERATOR_NAME = re.compile(r"[a-z][a-z0-9._-]{0,63}")


class Kind(StrEnum):
    MESSAGE = "message"
    RECEIPT = "receipt"
    HEARTBEAT = "heartbeat"


_PURPOSE_OF_KIND = {
    Kind.MESSAGE: Purpose.MESSAGE,
    Kind.RECEIPT: Purpose.RECEIPT,
    Kind.HEARTBEAT: Purpose.HEARTBEAT,
}


class ReceiptKind(StrEnum):
    DELIVERED = "delivered"
    ACKNOWLEDGED = "acknowledged"


# --- payloads (the JSON inside signed statements) -------------------------------------------


class Header(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    v: int
    kind: str
    from_: str = msgspec.field(name="from")
    to: str = ""
    id: str = ""


class MessagePayload(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    v: int
    id: str
    from_: str = msgspec.field(name="from")
    to: str = ""
    seq: int = 0
    created: str = ""
    type: str = ""
    priority: str = ""
    body: dict[str, Any] = msgspec.field(default_factory=dict)
    expires: str | None = None
    in_reply_to: str | None = None
    tree_head: str | None = None  # base64 of the sender's latest signed tree head
    author: str | None = None  # the operator who wrote it
    released_by: str | None = None  # the second person who approved it (two-person release)
    notification: str | None = None  # shared by the copies of one notification to many peers


class ReceiptItem(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    id: str
    seq: int
    envelope_hash: str
    signed_hash: str
    leaf_index: int | None = None  # where the receipt's author logged the message


class ReceiptPayload(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    v: int
    id: str
    from_: str = msgspec.field(name="from")
    to: str = ""
    created: str = ""
    kind: str = ""
    items: list[ReceiptItem] = msgspec.field(default_factory=list)
    # Only for ACKNOWLEDGED receipts, which travel as sequenced envelopes:
    seq: int | None = None
    operator: str | None = None
    lang: str | None = None
    tz: str | None = None
    text_hash: str | None = None
    # The author's transcript right after logging the items (a signed tree head claim).
    tree_size: int | None = None
    tree_root: str | None = None


class HeartbeatPayload(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    v: int
    id: str
    from_: str = msgspec.field(name="from")
    to: str = ""
    created: str = ""
    nonce: str = ""
    echo: str | None = None
    last_seq: int = 0  # highest sequence number the sender has sealed to the recipient
    next_expected: int = 1  # the next sequence number the sender expects from the recipient
    expired: list[int] = msgspec.field(default_factory=list)  # seqs the sender gave up on
    tree_head: str | None = None  # base64 of the sender's latest signed tree head
    #: base64 of the largest signed tree head of the *recipient's* log the sender holds (signed
    #: by the recipient): how a node restored from an old backup learns what it lost.
    your_head: str | None = None
    #: base64 of the latest cosignature of the sender's log by each of its witnesses: the
    #: recipient proves what a witness saw consistent with what it holds (no split view).
    cosignatures: list[str] = msgspec.field(default_factory=list)


Payload = MessagePayload | ReceiptPayload | HeartbeatPayload
_PAYLOAD_TYPE: dict[Kind, type[MessagePayload | ReceiptPayload | HeartbeatPayload]] = {
    Kind.MESSAGE: MessagePayload,
    Kind.RECEIPT: ReceiptPayload,
    Kind.HEARTBEAT: HeartbeatPayload,
}


# --- ids -------------------------------------------------------------------------------------


def new_id(now: datetime) -> str:
    """A UUIDv7 (RFC 9562 §5.7): 48-bit Unix milliseconds, then random bits."""
    ms = int(now.timestamp() * 1000) & ((1 << 48) - 1)
    rand = int.from_bytes(os.urandom(10), "big")
    rand_a = rand >> 68 & 0xFFF
    rand_b = rand & ((1 << 62) - 1)
    value = ms << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return str(uuid.UUID(int=value))


def check_uuid(text: str, *, what: str) -> str:
    try:
        parsed = uuid.UUID(text)
    except ValueError as e:
        raise WireError(f"{what}: not a UUID: {text[:64]!r}") from e
    if str(parsed) != text:
        raise WireError(f"{what}: UUID not in canonical lowercase form: {text[:64]!r}")
    return text


# --- composing signed statements -------------------------------------------------------------


def message_payload(
    identity: Identity,
    *,
    to: str,
    message_id: str,
    seq: int,
    created: datetime,
    msg_type: str,
    priority: str,
    body: dict[str, Any],
    expires: datetime | None = None,
    in_reply_to: str | None = None,
    tree_head: bytes | None = None,
    author: str | None = None,
    released_by: str | None = None,
    notification: str | None = None,
) -> bytes:
    """The payload of a message statement, as ``sign_message`` signs it (for signing apart)."""
    payload: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "id": message_id,
        "from": identity.name,
        "to": to,
        "seq": seq,
        "created": format_time(created),
        "type": msg_type,
        "priority": priority,
        "body": body,
    }
    if expires is not None:
        payload["expires"] = format_time(expires)
    if in_reply_to is not None:
        payload["in_reply_to"] = in_reply_to
    if tree_head is not None:
        payload["tree_head"] = b64encode(tree_head)
    if author is not None:
        payload["author"] = author
    if released_by is not None:
        payload["released_by"] = released_by
    if notification is not None:
        payload["notification"] = notification
    return encode_json(payload)


def sign_message(
    identity: Identity,
    *,
    to: str,
    message_id: str,
    seq: int,
    created: datetime,
    msg_type: str,
    priority: str,
    body: dict[str, Any],
    expires: datetime | None = None,
    in_reply_to: str | None = None,
    tree_head: bytes | None = None,
    author: str | None = None,
    released_by: str | None = None,
    notification: str | None = None,
) -> bytes:
    return identity.signing.sign(
        Purpose.MESSAGE,
        message_payload(
            identity,
            to=to,
            message_id=message_id,
            seq=seq,
            created=created,
            msg_type=msg_type,
            priority=priority,
            body=body,
            expires=expires,
            in_reply_to=in_reply_to,
            tree_head=tree_head,
            author=author,
            released_by=released_by,
            notification=notification,
        ),
    )


def sign_receipt(
    identity: Identity,
    *,
    to: str,
    receipt_id: str,
    created: datetime,
    kind: ReceiptKind,
    items: list[ReceiptItem],
    seq: int | None = None,
    operator: str | None = None,
    lang: str | None = None,
    tz: str | None = None,
    text_hash: str | None = None,
    tree_size: int | None = None,
    tree_root: bytes | None = None,
) -> bytes:
    payload: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "id": receipt_id,
        "from": identity.name,
        "to": to,
        "created": format_time(created),
        "kind": kind.value,
        "items": [msgspec.to_builtins(item) for item in items],
    }
    for key, value in (
        ("seq", seq),
        ("operator", operator),
        ("lang", lang),
        ("tz", tz),
        ("text_hash", text_hash),
        ("tree_size", tree_size),
        ("tree_root", tree_root.hex() if tree_root is not None else None),
    ):
        if value is not None:
            payload[key] = value
    return identity.signing.sign(Purpose.RECEIPT, encode_json(payload))


def sign_heartbeat(
    identity: Identity,
    *,
    to: str,
    heartbeat_id: str,
    created: datetime,
    nonce: str,
    echo: str | None,
    last_seq: int,
    next_expected: int,
    expired: list[int],
    tree_head: bytes | None = None,
    your_head: bytes | None = None,
    cosignatures: list[bytes] | None = None,
) -> bytes:
    payload: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "id": heartbeat_id,
        "from": identity.name,
        "to": to,
        "created": format_time(created),
        "nonce": nonce,
        "last_seq": last_seq,
        "next_expected": next_expected,
        "expired": expired[:MAX_EXPIRED_LISTED],
    }
    if echo is not None:
        payload["echo"] = echo
    if tree_head is not None:
        payload["tree_head"] = b64encode(tree_head)
    if your_head is not None:
        payload["your_head"] = b64encode(your_head)
    if cosignatures:
        payload["cosignatures"] = [b64encode(c) for c in cosignatures[:MAX_COSIGNATURES_LISTED]]
    return identity.signing.sign(Purpose.HEARTBEAT, encode_json(payload))


# --- sealing and opening ---------------------------------------------------------------------


def _envelope_prefix(header: bytes) -> bytes:
    return ENVELOPE_MAGIC + struct.pack(">H", len(header)) + header


def seal(
    *,
    kind: Kind,
    sender: str,
    recipient: str,
    envelope_id: str,
    statement: bytes,
    recipient_key: EncryptionPublicKey,
) -> bytes:
    """Encrypt ``statement`` to ``recipient`` with the routing header bound into HPKE's info."""
    header = encode_json(
        {
            "v": PROTOCOL_VERSION,
            "kind": kind.value,
            "from": sender,
            "to": recipient,
            "id": envelope_id,
        }
    )
    prefix = _envelope_prefix(header)
    ciphertext = HPKE_SUITE.encrypt(
        statement, recipient_key.hpke_key(), info=ENVELOPE_INFO_DOMAIN + prefix
    )
    envelope = prefix + ciphertext
    if len(envelope) > MAX_ENVELOPE_BYTES:
        raise WireError(
            f"sealed envelope of {len(envelope)} bytes exceeds {MAX_ENVELOPE_BYTES}",
            code=ErrorCode.TOO_LARGE,
        )
    return envelope


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class RoutingHeader:
    kind: Kind
    sender: str
    recipient: str
    envelope_id: str
    raw: bytes


def read_header(data: bytes) -> RoutingHeader:
    """Checks 1-3 of opening: size, magic/version, header (no keys needed; relays use this)."""
    if len(data) > MAX_ENVELOPE_BYTES:
        raise WireError(
            f"envelope of {len(data)} bytes exceeds {MAX_ENVELOPE_BYTES}",
            code=ErrorCode.TOO_LARGE,
        )
    if len(data) < 6 or data[:4] != ENVELOPE_MAGIC:
        raise WireError("not a hotline v1 envelope (bad magic)", code=ErrorCode.BAD_VERSION)
    (header_len,) = struct.unpack(">H", data[4:6])
    if header_len > MAX_HEADER_BYTES or len(data) < 6 + header_len:
        raise WireError(f"header length {header_len} invalid for {len(data)} bytes")
    return _parse_header(data[6 : 6 + header_len])


@functools.lru_cache(maxsize=256)
def _parse_header(raw: bytes) -> RoutingHeader:
    """Check 3, kept for the last few headers: a node reads an envelope's header when the
    request comes in (whose budget it spends) and again when it opens it, 40 us each on the
    path of every message. A refused header raises every time (nothing of it is kept)."""
    header = decode_json(raw, Header, what="envelope header", limit=MAX_HEADER_BYTES)
    if header.v != PROTOCOL_VERSION:
        raise WireError(f"protocol version {header.v} unsupported", code=ErrorCode.BAD_VERSION)
    try:
        kind = Kind(header.kind)
    except ValueError as e:
        raise WireError(f"unknown envelope kind {header.kind[:32]!r}") from e
    try:
        check_name(header.from_)
        check_name(header.to)
    except HotlineError as e:
        raise WireError(f"envelope header: {e.detail}") from e
    check_uuid(header.id, what="envelope id")
    return RoutingHeader(kind, header.from_, header.to, header.id, raw)


@dataclass(frozen=True, slots=True)
class Opened:
    """An envelope that passed every stateless check: authentic, for us, well-formed."""

    header: RoutingHeader
    statement: Statement
    payload: MessagePayload | ReceiptPayload | HeartbeatPayload
    envelope: bytes  # the exact bytes received
    envelope_hash: str  # SHA-256 hex of ``envelope`` (the transcript leaf data)


def open_envelope(
    identity: Identity,
    data: bytes,
    sender_key: Callable[[str], SigningPublicKey | None],
    *,
    other_keys: Callable[[str], Mapping[bytes, SigningPublicKey]] | None = None,
) -> Opened:
    """Open an envelope addressed to ``identity``. Stateless checks, in this order:

    1. size (MAX_ENVELOPE_BYTES); 2. magic and protocol version; 3. header is strict JSON;
    4. sender is a known peer; 5. recipient is this node; 6. HPKE decryption with the header
    bound in ``info``; 7. the plaintext is a statement for the purpose the kind implies, signed by
    the sender's key, both signatures valid; 8. the payload is strict JSON of the kind's shape;
    9. payload ``from``/``to``/``id`` equal the header's.
    Replay and sequence checks need the store and happen in ``hotline.link``.

    ``other_keys`` (by key id) are further keys of the sender a statement may name (keys of
    other generations, §15); whether such a key may still sign is the caller's check
    (``hotline.core.keyevents.check_key_use``), made with the statement's ``key_id``.
    """
    header = read_header(data)  # 1-3
    signer = sender_key(header.sender)  # 4
    if signer is None:
        raise VerificationError(f"unknown sender {header.sender!r}", code=ErrorCode.UNKNOWN_SENDER)
    if header.recipient != identity.name:  # 5
        raise VerificationError(
            f"envelope for {header.recipient!r}, this node is {identity.name!r}",
            code=ErrorCode.WRONG_RECIPIENT,
        )
    prefix = data[: 6 + len(header.raw)]
    plaintext = _decrypt(identity, data[len(prefix) :], ENVELOPE_INFO_DOMAIN + prefix)  # 6
    if other_keys is not None:
        named = peek_statement(plaintext)[1]
        if named != signer.key_id:
            signer = other_keys(header.sender).get(named, signer)
    statement = verify_statement(plaintext, _PURPOSE_OF_KIND[header.kind], signer)  # 7
    payload = parse_payload(header.kind, statement.payload)  # 8
    if (payload.from_, payload.to, payload.id) != (  # 9
        header.sender,
        header.recipient,
        header.envelope_id,
    ):
        raise VerificationError(
            "signed from/to/id differ from the routing header", code=ErrorCode.HEADER_MISMATCH
        )
    return Opened(header, statement, payload, data, sha256_hex(data))


def parse_payload(kind: Kind, data: bytes) -> MessagePayload | ReceiptPayload | HeartbeatPayload:
    """Step 8 of opening: the signed payload of a ``kind`` envelope, strictly parsed and checked.

    A peer signs whatever payload it likes, so this is a parser of untrusted bytes in its own
    right (fuzzed and property-tested without paying for a signature per input).
    """
    payload = decode_json(data, _PAYLOAD_TYPE[kind], what=f"{kind} payload")
    if payload.v != PROTOCOL_VERSION:
        raise WireError(f"payload version {payload.v}", code=ErrorCode.BAD_VERSION)
    _check_payload(payload)
    return payload


def _decrypt(identity: Identity, ciphertext: bytes, info: bytes) -> bytes:
    """HPKE open with the current key, then (an envelope sealed before a rotation reached the
    sender) with earlier generations' keys."""
    for key in (identity.decryption, *identity.previous):
        try:
            return HPKE_SUITE.decrypt(ciphertext, key.hpke_key(), info=info)
        except (InvalidTag, ValueError):
            continue
    raise VerificationError(
        "decryption failed (wrong recipient key, altered bytes or header)",
        code=ErrorCode.DECRYPT_FAILED,
    )


def _check_payload(payload: MessagePayload | ReceiptPayload | HeartbeatPayload) -> None:
    # Compared with the routing header later (header_mismatch); refused here first so that no
    # malformed name reaches a log line or an error message.
    for field, node in (("from", payload.from_), ("to", payload.to)):
        if not NAME_PATTERN.fullmatch(node):
            raise WireError(f"{field} is not a node name: {node[:64]!r}")
    if isinstance(payload, MessagePayload):
        if payload.seq < 1:
            raise WireError(f"sequence number {payload.seq} must be at least 1")
        if payload.in_reply_to is not None:
            check_uuid(payload.in_reply_to, what="in_reply_to")
        if payload.notification is not None:
            check_uuid(payload.notification, what="notification")
        for role, name in (("author", payload.author), ("released_by", payload.released_by)):
            if name is not None and not OPERATOR_NAME.fullmatch(name):
                raise WireError(f"{role} is not an operator name: {name[:64]!r}")
    elif isinstance(payload, ReceiptPayload):
        if payload.kind not in (ReceiptKind.DELIVERED, ReceiptKind.ACKNOWLEDGED):
            raise WireError(f"unknown receipt kind {payload.kind[:32]!r}")
        if not 1 <= len(payload.items) <= MAX_RECEIPT_ITEMS:
            raise WireError(f"a receipt covers 1 to {MAX_RECEIPT_ITEMS} messages")
        for item in payload.items:
            check_uuid(item.id, what="receipt item id")
        if payload.operator is not None and not OPERATOR_NAME.fullmatch(payload.operator):
            raise WireError(f"operator is not an operator name: {payload.operator[:64]!r}")
        if (payload.tree_size is None) != (payload.tree_root is None):
            raise WireError("a receipt's tree_size and tree_root come together")
        if payload.tree_size is not None and any(
            i.leaf_index is None or not 0 <= i.leaf_index < payload.tree_size for i in payload.items
        ):
            raise WireError("receipt items must name leaf indexes inside the receipt's tree")
        if payload.kind == ReceiptKind.ACKNOWLEDGED and (
            payload.seq is None or payload.seq < 1 or len(payload.items) != 1
        ):
            raise WireError("an acknowledged receipt names one message and has a sequence number")
    else:
        check_uuid(payload.id, what="heartbeat id")
        if len(payload.expired) > MAX_EXPIRED_LISTED:
            raise WireError(f"heartbeat lists more than {MAX_EXPIRED_LISTED} expired messages")
        if len(payload.cosignatures) > MAX_COSIGNATURES_LISTED:
            raise WireError(f"heartbeat carries more than {MAX_COSIGNATURES_LISTED} cosignatures")


# --- batches (one HTTP request carries many envelopes) ---------------------------------------


def encode_batch(envelopes: list[bytes]) -> bytes:
    if len(envelopes) > MAX_BATCH_ENVELOPES:
        raise WireError(f"a batch holds at most {MAX_BATCH_ENVELOPES} envelopes")
    parts = [BATCH_MAGIC, struct.pack(">H", len(envelopes))]
    for envelope in envelopes:
        parts.append(struct.pack(">I", len(envelope)))
        parts.append(envelope)
    return b"".join(parts)


def decode_batch(data: bytes) -> list[bytes]:
    """Split a batch, refusing anything that does not add up exactly."""
    if len(data) > MAX_BATCH_BYTES:
        raise WireError(f"batch of {len(data)} bytes over limit", code=ErrorCode.TOO_LARGE)
    if len(data) < 6 or data[:4] != BATCH_MAGIC:
        raise WireError("not a hotline v1 batch (bad magic)", code=ErrorCode.BAD_VERSION)
    (count,) = struct.unpack(">H", data[4:6])
    if count > MAX_BATCH_ENVELOPES:
        raise WireError(f"batch of {count} envelopes over limit {MAX_BATCH_ENVELOPES}")
    pos = 6
    out: list[bytes] = []
    for index in range(count):
        if len(data) < pos + 4:
            raise WireError(f"batch truncated at envelope {index}")
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        pos += 4
        if length > MAX_ENVELOPE_BYTES or len(data) < pos + length:
            raise WireError(f"batch envelope {index} length {length} invalid")
        out.append(data[pos : pos + length])
        pos += length
    if pos != len(data):
        raise WireError(f"{len(data) - pos} trailing bytes after the batch")
    return out


__all__ = [
    "MAX_BATCH_ENVELOPES",
    "MAX_ENVELOPE_BYTES",
    "HeartbeatPayload",
    "Kind",
    "MessagePayload",
    "Opened",
    "ReceiptItem",
    "ReceiptKind",
    "ReceiptPayload",
    "RoutingHeader",
    "check_uuid",
    "decode_batch",
    "encode_batch",
    "message_payload",
    "new_id",
    "open_envelope",
    "parse_payload",
    "read_header",
    "seal",
    "sha256_hex",
    "sign_heartbeat",
    "sign_message",
    "sign_receipt",
]
