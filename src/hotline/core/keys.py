"""A node's keys: a composite signing key and an HPKE key pair, and the signed-statement format.

Fixed algorithms, no negotiation (DESIGN decision 3):
- signatures are composite, Ed25519 **and** ML-DSA-65, and a statement is valid only when both
  verify;
- encryption is HPKE (RFC 9180) with KEM ML-KEM-768+X25519, HKDF-SHA256, ChaCha20-Poly1305.

A *signed statement* is the one way anything is signed (see docs/protocol.md §2)::

    "HLS1" | u8 label_len | label | key_id[16] | u32 payload_len | payload
           | ed25519 signature[64] | ml-dsa-65 signature[3309]

Both signatures cover ``SIGNATURE_DOMAIN`` followed by every byte before the signatures, so the
label (the purpose) and the signer's key id are signed too, and a verifier checks the exact bytes
it received without re-encoding anything.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from dataclasses import dataclass
from enum import StrEnum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa, mlkem, x25519

from hotline.core.encoding import MAX_PAYLOAD_BYTES
from hotline.errors import ErrorCode, VerificationError, WireError

STATEMENT_MAGIC = b"HLS1"
SIGNATURE_DOMAIN = b"hotline signed statement v1\x00"
MLDSA_CONTEXT = b"hotline-v1"

ED25519_PUBLIC_BYTES = 32
ED25519_SIGNATURE_BYTES = 64
MLDSA65_PUBLIC_BYTES = 1952
MLDSA65_SIGNATURE_BYTES = 3309
MLKEM768_PUBLIC_BYTES = 1184
X25519_PUBLIC_BYTES = 32
KEY_ID_BYTES = 16
MAX_LABEL_BYTES = 32

_SIGNATURES_BYTES = ED25519_SIGNATURE_BYTES + MLDSA65_SIGNATURE_BYTES

HPKE_SUITE = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)


class Purpose(StrEnum):
    """Domain-separation labels: a signature made for one purpose never verifies as another."""

    MESSAGE = "message"
    RECEIPT = "receipt"
    HEARTBEAT = "heartbeat"
    CARD = "card"
    TREE_HEAD = "tree-head"
    COSIGNATURE = "cosignature"
    TRANSLATION = "translation"
    AUDIT_BUNDLE = "audit-bundle"
    KEY_ROTATION = "key-rotation"  # signed by the old key over the new key's signed claim
    KEY_ROTATION_NEW = "key-rotation-new"  # the new key's signed claim inside a rotation
    KEY_REVOCATION = "key-revocation"  # signed by the new key that replaces a compromised one
    RELAY_DEPOSIT = "relay-deposit"
    RELAY_PULL = "relay-pull"
    RECOVERY_REQUEST = "recovery-request"  # a restored node asks a peer for its lost tail
    RECOVERY = "recovery"  # the peer's answer: the statements, with proofs in its log


#: Parsed public keys kept (least recently used out): a node verifies with, and seals to, the
#: same few peer keys for every envelope, and parsing one is a large share of a verification
#: (ML-DSA-65 about 17 us, ML-KEM-768 about 36 us: the key's matrix is expanded on load).
#: Public keys only; a key that does not parse raises, and is not kept.
PARSED_KEYS_KEPT = 256


@functools.lru_cache(maxsize=PARSED_KEYS_KEPT)
def _ed25519_public(raw: bytes) -> ed25519.Ed25519PublicKey:
    return ed25519.Ed25519PublicKey.from_public_bytes(raw)


@functools.lru_cache(maxsize=PARSED_KEYS_KEPT)
def _mldsa65_public(raw: bytes) -> mldsa.MLDSA65PublicKey:
    return mldsa.MLDSA65PublicKey.from_public_bytes(raw)


@functools.lru_cache(maxsize=PARSED_KEYS_KEPT)
def _hpke_public(mlkem768: bytes, x25519_raw: bytes) -> hpke.MLKEM768X25519PublicKey:
    return hpke.MLKEM768X25519PublicKey(
        mlkem.MLKEM768PublicKey.from_public_bytes(mlkem768),
        x25519.X25519PublicKey.from_public_bytes(x25519_raw),
    )


@dataclass(frozen=True, slots=True)
class SigningPublicKey:
    ed25519: bytes
    mldsa65: bytes

    def __post_init__(self) -> None:
        if len(self.ed25519) != ED25519_PUBLIC_BYTES:
            raise WireError(f"Ed25519 public key must be {ED25519_PUBLIC_BYTES} bytes")
        if len(self.mldsa65) != MLDSA65_PUBLIC_BYTES:
            raise WireError(f"ML-DSA-65 public key must be {MLDSA65_PUBLIC_BYTES} bytes")

    @property
    def key_id(self) -> bytes:
        """First 16 bytes of SHA-256 over both public keys: names the key inside statements."""
        digest = hashlib.sha256(b"hotline key id v1\x00" + self.ed25519 + self.mldsa65).digest()
        return digest[:KEY_ID_BYTES]


@dataclass(frozen=True, slots=True)
class EncryptionPublicKey:
    mlkem768: bytes
    x25519: bytes

    def __post_init__(self) -> None:
        if len(self.mlkem768) != MLKEM768_PUBLIC_BYTES:
            raise WireError(f"ML-KEM-768 public key must be {MLKEM768_PUBLIC_BYTES} bytes")
        if len(self.x25519) != X25519_PUBLIC_BYTES:
            raise WireError(f"X25519 public key must be {X25519_PUBLIC_BYTES} bytes")

    def hpke_key(self) -> hpke.MLKEM768X25519PublicKey:
        try:
            return _hpke_public(self.mlkem768, self.x25519)
        except ValueError as e:
            raise WireError(f"invalid encryption public key: {e}") from e


class SigningKey:
    """The private half of a composite signing key."""

    __slots__ = ("_ed25519", "_mldsa", "public")

    def __init__(self, ed25519_seed: bytes, mldsa_seed: bytes) -> None:
        self._ed25519 = ed25519.Ed25519PrivateKey.from_private_bytes(ed25519_seed)
        self._mldsa = mldsa.MLDSA65PrivateKey.from_seed_bytes(mldsa_seed)
        self.public = SigningPublicKey(
            ed25519=self._ed25519.public_key().public_bytes_raw(),
            mldsa65=self._mldsa.public_key().public_bytes_raw(),
        )

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(
            ed25519.Ed25519PrivateKey.generate().private_bytes_raw(),
            mldsa.MLDSA65PrivateKey.generate().private_bytes_raw(),
        )

    def private_bytes(self) -> tuple[bytes, bytes]:
        """(Ed25519 seed, ML-DSA-65 seed): what a key file stores."""
        return self._ed25519.private_bytes_raw(), self._mldsa.private_bytes_raw()

    def sign(self, purpose: Purpose, payload: bytes) -> bytes:
        """A signed statement of ``payload`` for ``purpose`` (the format in the module doc)."""
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise WireError(
                f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}",
                code=ErrorCode.TOO_LARGE,
            )
        label = purpose.value.encode("ascii")
        head = (
            STATEMENT_MAGIC
            + struct.pack(">B", len(label))
            + label
            + self.public.key_id
            + struct.pack(">I", len(payload))
        )
        signed_part = head + payload
        message = SIGNATURE_DOMAIN + signed_part
        return (
            signed_part
            + self._ed25519.sign(message)
            + self._mldsa.sign(message, context=MLDSA_CONTEXT)
        )


class DecryptionKey:
    """The private half of the HPKE key pair."""

    __slots__ = ("_hpke", "_mlkem", "_x25519", "public")

    def __init__(self, mlkem_seed: bytes, x25519_private: bytes) -> None:
        self._mlkem = mlkem.MLKEM768PrivateKey.from_seed_bytes(mlkem_seed)
        self._x25519 = x25519.X25519PrivateKey.from_private_bytes(x25519_private)
        self._hpke = hpke.MLKEM768X25519PrivateKey(self._mlkem, self._x25519)
        self.public = EncryptionPublicKey(
            mlkem768=self._mlkem.public_key().public_bytes_raw(),
            x25519=self._x25519.public_key().public_bytes_raw(),
        )

    @classmethod
    def generate(cls) -> DecryptionKey:
        return cls(
            mlkem.MLKEM768PrivateKey.generate().private_bytes_raw(),
            x25519.X25519PrivateKey.generate().private_bytes_raw(),
        )

    def private_bytes(self) -> tuple[bytes, bytes]:
        """(ML-KEM-768 seed, X25519 private key): what a key file stores."""
        return self._mlkem.private_bytes_raw(), self._x25519.private_bytes_raw()

    def hpke_key(self) -> hpke.MLKEM768X25519PrivateKey:
        return self._hpke


@dataclass(frozen=True, slots=True)
class Statement:
    """A signed statement whose signatures have been checked."""

    purpose: Purpose
    key_id: bytes
    payload: bytes
    raw: bytes  # the exact bytes received, for storage and hashing

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()


@dataclass(frozen=True, slots=True)
class _ParsedStatement:
    label: str
    key_id: bytes
    payload: bytes
    signed_part: bytes
    ed25519_signature: bytes
    mldsa_signature: bytes


def _parse_statement(data: bytes) -> _ParsedStatement:
    minimum = len(STATEMENT_MAGIC) + 1 + KEY_ID_BYTES + 4 + _SIGNATURES_BYTES
    if len(data) < minimum:
        raise WireError(f"signed statement of {len(data)} bytes is shorter than {minimum}")
    if data[:4] != STATEMENT_MAGIC:
        raise WireError("not a signed statement (bad magic)", code=ErrorCode.BAD_VERSION)
    label_len = data[4]
    if not 1 <= label_len <= MAX_LABEL_BYTES:
        raise WireError(f"label length {label_len} out of range")
    pos = 5
    label_bytes = data[pos : pos + label_len]
    pos += label_len
    key_id = data[pos : pos + KEY_ID_BYTES]
    pos += KEY_ID_BYTES
    if len(data) < pos + 4:
        raise WireError("signed statement truncated before the payload length")
    (payload_len,) = struct.unpack(">I", data[pos : pos + 4])
    pos += 4
    if payload_len > MAX_PAYLOAD_BYTES:
        raise WireError(f"payload length {payload_len} over limit", code=ErrorCode.TOO_LARGE)
    if len(data) != pos + payload_len + _SIGNATURES_BYTES:
        raise WireError(
            f"signed statement length {len(data)} does not match its payload length "
            f"{payload_len} (expected {pos + payload_len + _SIGNATURES_BYTES})"
        )
    payload = data[pos : pos + payload_len]
    pos += payload_len
    try:
        label = label_bytes.decode("ascii")
    except UnicodeDecodeError as e:
        raise WireError("label is not ASCII") from e
    return _ParsedStatement(
        label=label,
        key_id=key_id,
        payload=payload,
        signed_part=data[:pos],
        ed25519_signature=data[pos : pos + ED25519_SIGNATURE_BYTES],
        mldsa_signature=data[pos + ED25519_SIGNATURE_BYTES :],
    )


def verify_statement(data: bytes, purpose: Purpose, signer: SigningPublicKey) -> Statement:
    """Check ``data`` is a statement for ``purpose`` signed by ``signer``; return it.

    Steps, in order (docs/protocol.md §2.3): 1. structure and lengths; 2. purpose label equals the
    one expected; 3. key id names ``signer``; 4. Ed25519 signature; 5. ML-DSA-65 signature.
    The payload is returned only after both signatures verify.
    """
    parsed = _parse_statement(data)  # 1
    if parsed.label != purpose.value:  # 2
        raise VerificationError(
            f"statement signed for {parsed.label!r}, expected {purpose.value!r}",
            code=ErrorCode.WRONG_PURPOSE,
        )
    if parsed.key_id != signer.key_id:  # 3
        raise VerificationError(
            f"statement names key {parsed.key_id.hex()}, expected {signer.key_id.hex()}",
            code=ErrorCode.UNKNOWN_KEY,
        )
    message = SIGNATURE_DOMAIN + parsed.signed_part
    try:  # 4
        _ed25519_public(signer.ed25519).verify(parsed.ed25519_signature, message)
    except InvalidSignature as e:
        raise VerificationError("Ed25519 signature does not verify") from e
    try:  # 5
        _mldsa65_public(signer.mldsa65).verify(
            parsed.mldsa_signature, message, context=MLDSA_CONTEXT
        )
    except InvalidSignature as e:
        raise VerificationError("ML-DSA-65 signature does not verify") from e
    return Statement(purpose=purpose, key_id=parsed.key_id, payload=parsed.payload, raw=data)


def peek_statement(data: bytes) -> tuple[str, bytes, bytes]:
    """(label, key id, payload) of a statement WITHOUT checking signatures.

    Only for choosing which key to verify with (a self-signed card names its own keys); never
    trust the payload before ``verify_statement`` returns.
    """
    parsed = _parse_statement(data)
    return parsed.label, parsed.key_id, parsed.payload


__all__ = [
    "HPKE_SUITE",
    "DecryptionKey",
    "EncryptionPublicKey",
    "Purpose",
    "SigningKey",
    "SigningPublicKey",
    "Statement",
    "peek_statement",
    "verify_statement",
]
