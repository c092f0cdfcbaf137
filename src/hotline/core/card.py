"""Contact cards and fingerprints.

A card is a node's self-signed statement (purpose ``card``) of its name, display names, public
keys and endpoints. Its file form is JSON: ``{"hotline_card": 1, "statement": "<base64>"}``.

The **fingerprint** is what two duty officers read to each other over a telephone to check keys
out of band: 30 decimal digits in six groups of five, derived from SHA-256 over the node name and
all four public keys (not the endpoints, which may change without a new check).

A card may carry the node's **TLS certificate** (``tls``: base64 of one DER X.509 certificate,
ECDSA P-256). The card's signature binds it to the identity key, so a peer that checked the
fingerprint can pin exactly that certificate for the node's ``https://`` endpoints. A card
without ``tls`` is byte-for-byte what it was before the field existed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import msgspec
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from hotline.core.encoding import (
    b64decode,
    b64encode,
    decode_json,
    encode_json,
    format_time,
    parse_time,
)
from hotline.core.keys import (
    MLDSA65_PUBLIC_BYTES,
    MLKEM768_PUBLIC_BYTES,
    DecryptionKey,
    EncryptionPublicKey,
    Purpose,
    SigningKey,
    SigningPublicKey,
    peek_statement,
    verify_statement,
)
from hotline.errors import ErrorCode, InputError, VerificationError, WireError

CARD_VERSION = 1
#: A card file is small; anything larger is not a card.
MAX_CARD_FILE_BYTES = 64 * 1024
MAX_ENDPOINTS = 8
MAX_ENDPOINT_CHARS = 256
MAX_DISPLAY_NAME_CHARS = 128
#: A self-signed P-256 certificate is about 400 bytes; this leaves room, not abuse.
MAX_TLS_CERT_BYTES = 4096
FINGERPRINT_DOMAIN = b"hotline fingerprint v1\x00"
FINGERPRINT_GROUPS = 6

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
Role = Literal["node", "witness", "relay"]


def check_name(name: str) -> str:
    """Node names are short lowercase ASCII (they appear in headers, files and URLs)."""
    if not NAME_PATTERN.fullmatch(name):
        raise InputError(
            f"invalid node name {name!r}: use 1-63 lowercase letters, digits or '-', "
            "starting with a letter",
            fields={"name": "pattern [a-z][a-z0-9-]{0,62}"},
        )
    return name


@dataclass(frozen=True, slots=True)
class Identity:
    """A node's own name and private keys."""

    name: str
    signing: SigningKey
    decryption: DecryptionKey
    #: Decryption keys of earlier key generations, newest first: envelopes a peer sealed to an
    #: old key before it learnt of a rotation still open (docs/protocol.md §15).
    previous: tuple[DecryptionKey, ...] = ()

    @classmethod
    def generate(cls, name: str) -> Identity:
        return cls(check_name(name), SigningKey.generate(), DecryptionKey.generate())


class _CardKeys(msgspec.Struct, forbid_unknown_fields=True):
    ed25519: str
    mldsa65: str
    mlkem768: str
    x25519: str


class _CardPayload(msgspec.Struct, forbid_unknown_fields=True):
    v: int
    name: str
    display_names: dict[str, str]
    role: str
    keys: _CardKeys
    endpoints: list[str]
    created: str
    tls: str | None = None


class _CardFile(msgspec.Struct, forbid_unknown_fields=True):
    hotline_card: int
    statement: str


@dataclass(frozen=True, slots=True)
class Card:
    """A verified contact card."""

    name: str
    display_names: dict[str, str]
    role: Role
    signing_key: SigningPublicKey
    encryption_key: EncryptionPublicKey
    endpoints: tuple[str, ...]
    created: datetime
    statement: bytes  # the exact signed statement
    #: DER of the node's TLS certificate (pinned by peers for https endpoints), if it has one.
    tls_cert: bytes | None = None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.name, self.signing_key, self.encryption_key)

    def to_file_bytes(self) -> bytes:
        return encode_json({"hotline_card": CARD_VERSION, "statement": b64encode(self.statement)})


def fingerprint(name: str, signing: SigningPublicKey, encryption: EncryptionPublicKey) -> str:
    """Six groups of five digits, e.g. ``"04217 88310 ..."`` (about 100 bits)."""
    digest = hashlib.sha256(
        FINGERPRINT_DOMAIN
        + name.encode("ascii")
        + b"\x00"
        + signing.ed25519
        + signing.mldsa65
        + encryption.mlkem768
        + encryption.x25519
    ).digest()
    groups = []
    for i in range(FINGERPRINT_GROUPS):
        chunk = int.from_bytes(digest[5 * i : 5 * i + 5], "big")
        groups.append(f"{chunk % 100_000:05d}")
    return " ".join(groups)


def normalize_fingerprint(text: str) -> str:
    """Accept a fingerprint typed with any spacing or dashes; return the canonical form."""
    digits = re.sub(r"[\s-]", "", text)
    if not re.fullmatch(rf"\d{{{5 * FINGERPRINT_GROUPS}}}", digits):
        raise InputError(
            f"a fingerprint is {5 * FINGERPRINT_GROUPS} digits, got {text!r}",
            fields={"fingerprint": "30 digits"},
        )
    return " ".join(digits[i : i + 5] for i in range(0, len(digits), 5))


def make_card(
    identity: Identity,
    *,
    display_names: dict[str, str],
    endpoints: list[str],
    created: datetime,
    role: Role = "node",
    tls_cert: bytes | None = None,
) -> Card:
    fields: dict[str, object] = {
        "v": CARD_VERSION,
        "name": identity.name,
        "display_names": display_names,
        "role": role,
        "keys": {
            "ed25519": b64encode(identity.signing.public.ed25519),
            "mldsa65": b64encode(identity.signing.public.mldsa65),
            "mlkem768": b64encode(identity.decryption.public.mlkem768),
            "x25519": b64encode(identity.decryption.public.x25519),
        },
        "endpoints": endpoints,
        "created": format_time(created),
    }
    if tls_cert is not None:
        fields["tls"] = b64encode(tls_cert)
    payload = encode_json(fields)
    return parse_card_statement(identity.signing.sign(Purpose.CARD, payload))


def _check_tls_cert(cert: bytes) -> bytes:
    """One DER certificate with an ECDSA P-256 key (what ``hotline init`` makes)."""
    try:
        parsed = x509.load_der_x509_certificate(cert)
        key = parsed.public_key()
    except ValueError as e:
        raise WireError(f"card tls certificate is not DER X.509: {e}") from e
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise WireError("card tls certificate must have an ECDSA P-256 key")
    return cert


def parse_card_statement(statement: bytes) -> Card:
    """Verify a self-signed card statement and return the card.

    Steps: 1. parse the payload to learn the claimed keys; 2. check the statement is a card
    signed by exactly those keys (both signatures); 3. validate every field.
    """
    label, _key_id, unverified = peek_statement(statement)
    if label != Purpose.CARD.value:
        raise VerificationError(
            f"statement signed for {label!r}, expected 'card'", code=ErrorCode.WRONG_PURPOSE
        )
    claimed = decode_json(unverified, _CardPayload, what="card")
    signing_key = SigningPublicKey(
        ed25519=b64decode(claimed.keys.ed25519, what="card ed25519 key", size=32),
        mldsa65=b64decode(claimed.keys.mldsa65, what="card mldsa65 key", size=MLDSA65_PUBLIC_BYTES),
    )
    checked = verify_statement(statement, Purpose.CARD, signing_key)
    payload = decode_json(checked.payload, _CardPayload, what="card")
    if payload.v != CARD_VERSION:
        raise WireError(f"card version {payload.v} unsupported", code=ErrorCode.BAD_VERSION)
    check_name(payload.name)
    if payload.role not in ("node", "witness", "relay"):
        raise WireError(f"card role {payload.role!r} unknown")
    if len(payload.endpoints) > MAX_ENDPOINTS or any(
        len(e) > MAX_ENDPOINT_CHARS or not e.startswith(("http://", "https://"))
        for e in payload.endpoints
    ):
        raise WireError("card endpoints must be at most 8 http(s) URLs")
    if len(payload.display_names) > 8 or any(
        len(k) > 8 or len(v) > MAX_DISPLAY_NAME_CHARS for k, v in payload.display_names.items()
    ):
        raise WireError("card display names too many or too long")
    encryption_key = EncryptionPublicKey(
        mlkem768=b64decode(
            payload.keys.mlkem768, what="card mlkem768 key", size=MLKEM768_PUBLIC_BYTES
        ),
        x25519=b64decode(payload.keys.x25519, what="card x25519 key", size=32),
    )
    encryption_key.hpke_key()  # refuses keys that are the right size but not valid points
    role: Role = (
        "node" if payload.role == "node" else ("witness" if payload.role == "witness" else "relay")
    )
    tls_cert = (
        None
        if payload.tls is None
        else _check_tls_cert(
            b64decode(payload.tls, what="card tls certificate", limit=MAX_TLS_CERT_BYTES)
        )
    )
    return Card(
        name=payload.name,
        display_names=dict(payload.display_names),
        role=role,
        signing_key=signing_key,
        encryption_key=encryption_key,
        endpoints=tuple(payload.endpoints),
        created=parse_time(payload.created, what="card created"),
        statement=statement,
        tls_cert=tls_cert,
    )


def parse_card_file(data: bytes) -> Card:
    """Parse and verify a card file (JSON with the base64 statement)."""
    wrapper = decode_json(data, _CardFile, what="card file", limit=MAX_CARD_FILE_BYTES)
    if wrapper.hotline_card != CARD_VERSION:
        raise WireError(f"card file version {wrapper.hotline_card}", code=ErrorCode.BAD_VERSION)
    return parse_card_statement(
        b64decode(wrapper.statement, what="card statement", limit=MAX_CARD_FILE_BYTES)
    )


__all__ = [
    "Card",
    "Identity",
    "check_name",
    "fingerprint",
    "make_card",
    "normalize_fingerprint",
    "parse_card_file",
    "parse_card_statement",
]
