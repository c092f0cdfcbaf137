"""Write tests/vectors/protocol-v1.json: wire-format test vectors for hotline protocol v1.

Run from the repository root::

    .venv/bin/python tests/vectors/generate.py

Every key comes from a fixed seed, every id and time is fixed, so most of the file is the same on
every run: key bytes, key ids, fingerprints, payloads, the signed part of each statement, the
Ed25519 signatures (RFC 8032 signing is deterministic), the envelope header and HPKE ``info``.
Two things are random by design and change on every run:

* ML-DSA-65 signatures: pyca/cryptography signs in FIPS 204's *hedged* mode (fresh randomness
  mixed into every signature) and offers no deterministic variant, so a vector can only say
  "this signature verifies", never "the signature is these bytes";
* the HPKE ciphertext: every seal draws a fresh KEM encapsulation, so the vector is a sealed
  envelope together with the statement it must open to.

``tests/vectors/test_vectors.py`` opens and verifies the committed file, and calls ``build`` and
``deterministic`` below to check that no deterministic byte has changed. Regenerate the file only
when the wire format changes on purpose, and update docs/protocol.md in the same commit.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from hotline.core import merkle
from hotline.core.card import Card, Identity, make_card
from hotline.core.envelope import (
    ENVELOPE_INFO_DOMAIN,
    Kind,
    ReceiptItem,
    ReceiptKind,
    encode_batch,
    seal,
    sign_heartbeat,
    sign_message,
    sign_receipt,
)
from hotline.core.keys import DecryptionKey, SigningKey
from hotline.core.treehead import sign_tree_head

OUTPUT = Path(__file__).with_name("protocol-v1.json")

#: Every private key below is SHAKE256 of this prefix and a label: reproducible, not secret.
SEED_PREFIX = b"hotline test vectors v1\x00"
CREATED = datetime(2026, 11, 26, 3, 12, 0, tzinfo=UTC)
TTL = timedelta(hours=1)
SIGNATURES_BYTES = 64 + 3309


def seed(label: str, size: int) -> bytes:
    """A fixed private seed: the first ``size`` bytes of SHAKE256(SEED_PREFIX || label)."""
    return hashlib.shake_256(SEED_PREFIX + label.encode("ascii")).digest(size)


def fixed_uuid7(moment: datetime, counter: int) -> str:
    """A UUIDv7 (RFC 9562 §5.7) with the time of ``moment`` and ``counter`` as its random bits."""
    ms = int(moment.timestamp() * 1000)
    value = ms << 80 | 0x7 << 76 | 0b10 << 62 | counter
    return str(uuid.UUID(int=value))


MESSAGE_ID = fixed_uuid7(CREATED, 1)
DELIVERED_ID = fixed_uuid7(CREATED, 2)
ACKNOWLEDGED_ID = fixed_uuid7(CREATED, 3)
HEARTBEAT_ID = fixed_uuid7(CREATED, 4)
HEARTBEAT_NONCE = "00112233445566778899aabbccddeeff"


def identity(name: str) -> Identity:
    return Identity(
        name,
        SigningKey(seed(f"{name} ed25519", 32), seed(f"{name} ml-dsa-65", 32)),
        DecryptionKey(seed(f"{name} ml-kem-768", 64), seed(f"{name} x25519", 32)),
    )


def _statement_record(statement: bytes) -> dict[str, Any]:
    """The parts of a signed statement, split as docs/protocol.md §2 lays them out."""
    label_len = statement[4]
    key_id_at = 5 + label_len
    payload_at = key_id_at + 16 + 4
    signed_part = statement[: len(statement) - SIGNATURES_BYTES]
    return {
        "label": statement[5:key_id_at].decode("ascii"),
        "key_id": statement[key_id_at : key_id_at + 16].hex(),
        "payload": signed_part[payload_at:].decode("utf-8"),
        "signed_part": signed_part.hex(),
        "ed25519_signature": statement[len(signed_part) : len(signed_part) + 64].hex(),
        "statement": statement.hex(),
    }


def _party(who: Identity, card: Card) -> dict[str, Any]:
    signing = who.signing.public
    encryption = who.decryption.public
    ed_seed, mldsa_seed = who.signing.private_bytes()
    mlkem_seed, x25519_private = who.decryption.private_bytes()
    fingerprint_input = (
        b"hotline fingerprint v1\x00"
        + who.name.encode("ascii")
        + b"\x00"
        + signing.ed25519
        + signing.mldsa65
        + encryption.mlkem768
        + encryption.x25519
    )
    return {
        "name": who.name,
        "private": {
            "ed25519_seed": ed_seed.hex(),
            "mldsa65_seed": mldsa_seed.hex(),
            "mlkem768_seed": mlkem_seed.hex(),
            "x25519_private": x25519_private.hex(),
        },
        "public": {
            "ed25519": signing.ed25519.hex(),
            "mldsa65": signing.mldsa65.hex(),
            "mlkem768": encryption.mlkem768.hex(),
            "x25519": encryption.x25519.hex(),
        },
        "key_id": signing.key_id.hex(),
        "fingerprint_input_sha256": hashlib.sha256(fingerprint_input).hexdigest(),
        "fingerprint": card.fingerprint,
        "card": _statement_record(card.statement),
        "card_file": card.to_file_bytes().decode("ascii"),
    }


def build(reference: tuple[bytes, bytes, bytes] | None = None) -> dict[str, Any]:
    """Make every vector. ``reference`` = (message statement, sealed envelope, DELIVERED receipt
    statement) that the receipts and the tree roots hash; by default the ones made here (the test
    passes the committed ones, so that payloads which hash those random bytes can be compared
    byte for byte)."""
    washington, moscow = identity("washington"), identity("moscow")
    cards = {
        "washington": make_card(
            washington,
            display_names={"en": "Washington", "ru": "Вашингтон"},
            endpoints=["https://washington.example:8443"],
            created=CREATED,
        ),
        "moscow": make_card(
            moscow,
            display_names={"en": "Moscow", "ru": "Москва"},
            endpoints=["https://moscow.example:8443"],
            created=CREATED,
        ),
    }
    message = sign_message(
        washington,
        to="moscow",
        message_id=MESSAGE_ID,
        seq=1,
        created=CREATED,
        msg_type="free_text",
        priority="flash",
        body={"text": "Test launch at 03:12 UTC, azimuth 045. Confirm receipt."},
        expires=CREATED + TTL,
    )
    envelope = seal(
        kind=Kind.MESSAGE,
        sender="washington",
        recipient="moscow",
        envelope_id=MESSAGE_ID,
        statement=message,
        recipient_key=moscow.decryption.public,
    )
    named_message, named_envelope = (
        (reference[0], reference[1]) if reference else (message, envelope)
    )
    item = ReceiptItem(
        id=MESSAGE_ID,
        seq=1,
        envelope_hash=hashlib.sha256(named_envelope).hexdigest(),
        signed_hash=hashlib.sha256(named_message).hexdigest(),
    )
    # moscow's log is empty before the message: it logs it at index 0 (message.in), and the
    # DELIVERED receipt names that index and moscow's tree right after (size 1).
    delivered = sign_receipt(
        moscow,
        to="washington",
        receipt_id=DELIVERED_ID,
        created=CREATED + timedelta(seconds=1),
        kind=ReceiptKind.DELIVERED,
        items=[msgspec.structs.replace(item, leaf_index=0)],
        tree_size=1,
        tree_root=merkle.leaf_hash(named_message),
    )
    named_delivered = reference[2] if reference else delivered
    # washington's log: the message (message.out, index 0), then moscow's DELIVERED receipt
    # (receipt.in, index 1); its signed head of size 2, as a heartbeat would carry it.
    tree_head = sign_tree_head(
        washington,
        size=2,
        root=merkle.node_hash(merkle.leaf_hash(named_message), merkle.leaf_hash(named_delivered)),
        time=CREATED + timedelta(seconds=60),
    )
    acknowledged = sign_receipt(
        moscow,
        to="washington",
        receipt_id=ACKNOWLEDGED_ID,
        created=CREATED + timedelta(seconds=40),
        kind=ReceiptKind.ACKNOWLEDGED,
        items=[item],
        seq=1,
        operator="ivanov",
        lang="ru",
        tz="Europe/Moscow",
        text_hash=hashlib.sha256("Пуск подтверждаем.".encode()).hexdigest(),
    )
    heartbeat = sign_heartbeat(
        washington,
        to="moscow",
        heartbeat_id=HEARTBEAT_ID,
        created=CREATED + timedelta(seconds=60),
        nonce=HEARTBEAT_NONCE,
        echo=None,
        last_seq=1,
        next_expected=2,
        expired=[],
    )
    header_len = int.from_bytes(envelope[4:6], "big")
    prefix = envelope[: 6 + header_len]
    return {
        "about": (
            "hotline protocol v1 test vectors (docs/protocol.md §11). Hex unless a field is text. "
            "Deterministic: keys, key ids, fingerprints, payloads, signed parts, Ed25519 "
            "signatures, envelope header and HPKE info. Random on every run: ML-DSA-65 signatures "
            "(hedged signing) and the HPKE ciphertext; check those by verifying and opening. "
            "Tree roots and receipt hashes are of the committed (random) statements."
        ),
        "seed_rule": "private seed = SHAKE256('hotline test vectors v1' || 0x00 || label)[:size]",
        "parties": {
            name: _party(who, cards[name])
            for name, who in (
                ("washington", washington),
                ("moscow", moscow),
            )
        },
        "message": _statement_record(message),
        "envelope": {
            "kind": "message",
            "sender": "washington",
            "recipient": "moscow",
            "header": envelope[6 : 6 + header_len].decode("utf-8"),
            "prefix": prefix.hex(),
            "hpke_info": (ENVELOPE_INFO_DOMAIN + prefix).hex(),
            "sealed": envelope.hex(),
            "sealed_sha256": hashlib.sha256(envelope).hexdigest(),
            "opens_to": message.hex(),
        },
        "delivered_receipt": _statement_record(delivered),
        "acknowledged_receipt": _statement_record(acknowledged),
        "heartbeat": _statement_record(heartbeat),
        "tree_head": _statement_record(tree_head.statement),
        "batch_of_the_envelope": {
            "prefix": encode_batch([envelope])[:10].hex(),
            "length": len(encode_batch([envelope])),
        },
    }


#: Fields that change on every run (ML-DSA signatures, HPKE randomness, and what embeds them).
_RANDOM_FIELDS = {"statement", "sealed", "sealed_sha256", "opens_to", "card_file"}


def deterministic(vectors: Any) -> Any:
    """``vectors`` without the fields that are random on every run."""
    if isinstance(vectors, dict):
        return {k: deterministic(v) for k, v in vectors.items() if k not in _RANDOM_FIELDS}
    return vectors


def main() -> None:
    vectors = build()
    OUTPUT.write_text(json.dumps(vectors, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
