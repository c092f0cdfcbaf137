"""The committed wire-format vectors (protocol-v1.json) still open, verify and regenerate.

Two kinds of check:

* the committed bytes are read back through hotline's own code (``open_envelope``,
  ``verify_statement``, ``parse_card_file``) and, independently, by hand from the layouts in
  docs/protocol.md using pyca/cryptography directly, so the document and the code agree;
* the generator is re-run in memory and every deterministic part (keys, key ids, fingerprints,
  payloads, signed parts, Ed25519 signatures, header, HPKE info) must equal the committed file.
  A failure here means the wire format changed: if on purpose, regenerate the vectors
  (``python tests/vectors/generate.py``) and update docs/protocol.md in the same commit.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import struct
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa, mlkem, x25519

from hotline.core.card import Identity, parse_card_file
from hotline.core.encoding import decode_json
from hotline.core.envelope import (
    HeartbeatPayload,
    MessagePayload,
    ReceiptPayload,
    decode_batch,
    encode_batch,
    open_envelope,
)
from hotline.core.keys import (
    DecryptionKey,
    Purpose,
    SigningKey,
    SigningPublicKey,
    verify_statement,
)
from hotline.core.treehead import verify_tree_head
from hotline.errors import ErrorCode, VerificationError

HERE = Path(__file__).parent


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hotline_vectors_generate", HERE / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generate = _load_generator()


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    return json.loads((HERE / "protocol-v1.json").read_text(encoding="utf-8"))


def _identity(party: dict[str, Any]) -> Identity:
    private = {k: bytes.fromhex(v) for k, v in party["private"].items()}
    return Identity(
        party["name"],
        SigningKey(private["ed25519_seed"], private["mldsa65_seed"]),
        DecryptionKey(private["mlkem768_seed"], private["x25519_private"]),
    )


def _signing_public(party: dict[str, Any]) -> SigningPublicKey:
    return SigningPublicKey(
        ed25519=bytes.fromhex(party["public"]["ed25519"]),
        mldsa65=bytes.fromhex(party["public"]["mldsa65"]),
    )


# --- through hotline's code ----------------------------------------------------------------


def test_committed_private_keys_give_the_committed_public_keys(vectors):
    for party in vectors["parties"].values():
        who = _identity(party)
        assert who.signing.public.ed25519.hex() == party["public"]["ed25519"]
        assert who.signing.public.mldsa65.hex() == party["public"]["mldsa65"]
        assert who.decryption.public.mlkem768.hex() == party["public"]["mlkem768"]
        assert who.decryption.public.x25519.hex() == party["public"]["x25519"]
        assert who.signing.public.key_id.hex() == party["key_id"]
        sizes = [len(bytes.fromhex(party["public"][k])) for k in party["public"]]
        assert sizes == [32, 1952, 1184, 32]


def test_committed_envelope_opens_to_the_committed_message(vectors):
    washington, moscow = vectors["parties"]["washington"], vectors["parties"]["moscow"]
    envelope = bytes.fromhex(vectors["envelope"]["sealed"])
    opened = open_envelope(
        _identity(moscow),
        envelope,
        lambda name: _signing_public(washington) if name == "washington" else None,
    )
    assert opened.statement.raw.hex() == vectors["envelope"]["opens_to"]
    assert opened.statement.raw.hex() == vectors["message"]["statement"]
    assert opened.envelope_hash == vectors["envelope"]["sealed_sha256"]
    assert isinstance(opened.payload, MessagePayload)
    assert opened.payload.seq == 1
    assert opened.payload.priority == "flash"
    assert opened.statement.payload.decode("utf-8") == vectors["message"]["payload"]


def test_the_committed_envelope_is_for_moscow_only(vectors):
    washington = vectors["parties"]["washington"]
    envelope = bytes.fromhex(vectors["envelope"]["sealed"])
    with pytest.raises(VerificationError) as e:
        open_envelope(_identity(washington), envelope, lambda name: _signing_public(washington))
    assert e.value.code == ErrorCode.WRONG_RECIPIENT


@pytest.mark.parametrize(
    ("record", "purpose", "signer", "payload_type"),
    [
        ("message", Purpose.MESSAGE, "washington", MessagePayload),
        ("delivered_receipt", Purpose.RECEIPT, "moscow", ReceiptPayload),
        ("acknowledged_receipt", Purpose.RECEIPT, "moscow", ReceiptPayload),
        ("heartbeat", Purpose.HEARTBEAT, "washington", HeartbeatPayload),
    ],
)
def test_committed_statements_verify_for_their_purpose_only(
    vectors, record, purpose, signer, payload_type
):
    statement = bytes.fromhex(vectors[record]["statement"])
    key = _signing_public(vectors["parties"][signer])
    checked = verify_statement(statement, purpose, key)
    assert checked.payload.decode("utf-8") == vectors[record]["payload"]
    assert checked.key_id.hex() == vectors["parties"][signer]["key_id"]
    payload = decode_json(checked.payload, payload_type, what=record)
    assert payload.v == 1
    with pytest.raises(VerificationError) as e:
        verify_statement(statement, Purpose.CARD, key)
    assert e.value.code == ErrorCode.WRONG_PURPOSE


def test_committed_cards_parse_and_give_the_committed_fingerprints(vectors):
    for party in vectors["parties"].values():
        card = parse_card_file(party["card_file"].encode("ascii"))
        assert card.name == party["name"]
        assert card.fingerprint == party["fingerprint"]
        assert card.statement.hex() == party["card"]["statement"]
        verify_statement(card.statement, Purpose.CARD, _signing_public(party))


def test_receipts_name_the_committed_message_and_envelope(vectors):
    envelope_hash = vectors["envelope"]["sealed_sha256"]
    signed_hash = hashlib.sha256(bytes.fromhex(vectors["message"]["statement"])).hexdigest()
    assert hashlib.sha256(bytes.fromhex(vectors["envelope"]["sealed"])).hexdigest() == (
        envelope_hash
    )
    item = {
        "id": json.loads(vectors["message"]["payload"])["id"],
        "seq": 1,
        "envelope_hash": envelope_hash,
        "signed_hash": signed_hash,
    }
    # Only the DELIVERED receipt names where its author logged the message.
    assert json.loads(vectors["delivered_receipt"]["payload"])["items"] == [
        {**item, "leaf_index": 0}
    ]
    assert json.loads(vectors["acknowledged_receipt"]["payload"])["items"] == [item]


def _leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def test_delivered_receipt_names_the_receivers_tree_by_hand(vectors):
    """moscow logged the message at index 0 of an empty log: its tree of size 1 has the message's
    leaf hash as its root (RFC 9162: SHA-256(0x00 || statement))."""
    payload = json.loads(vectors["delivered_receipt"]["payload"])
    message = bytes.fromhex(vectors["message"]["statement"])
    assert payload["tree_size"] == 1
    assert payload["tree_root"] == _leaf_hash(message).hex()
    assert all(0 <= i["leaf_index"] < payload["tree_size"] for i in payload["items"])
    decoded = decode_json(
        vectors["delivered_receipt"]["payload"].encode(), ReceiptPayload, what="receipt"
    )
    assert decoded.items[0].leaf_index == 0


def test_tree_head_verifies_and_its_root_is_computed_by_hand(vectors):
    """washington's head of size 2: the message (index 0), then moscow's receipt (index 1)."""
    washington = vectors["parties"]["washington"]
    statement = bytes.fromhex(vectors["tree_head"]["statement"])
    head = verify_tree_head(statement, _signing_public(washington), log="washington")
    message = bytes.fromhex(vectors["message"]["statement"])
    receipt = bytes.fromhex(vectors["delivered_receipt"]["statement"])
    root = hashlib.sha256(b"\x01" + _leaf_hash(message) + _leaf_hash(receipt)).digest()
    assert (head.size, head.root) == (2, root)
    payload = json.loads(vectors["tree_head"]["payload"])
    assert list(payload) == ["v", "log", "size", "root", "time"]
    assert payload == {
        "v": 1,
        "log": "washington",
        "size": 2,
        "root": root.hex(),
        "time": "2026-11-26T03:13:00.000000Z",
    }
    with pytest.raises(VerificationError) as e:
        verify_tree_head(statement, _signing_public(vectors["parties"]["moscow"]), log="moscow")
    assert e.value.code == ErrorCode.UNKNOWN_KEY
    with pytest.raises(VerificationError) as e:
        verify_statement(statement, Purpose.MESSAGE, _signing_public(washington))
    assert e.value.code == ErrorCode.WRONG_PURPOSE


def test_batch_framing_of_the_committed_envelope(vectors):
    envelope = bytes.fromhex(vectors["envelope"]["sealed"])
    batch = encode_batch([envelope])
    assert batch[:10].hex() == vectors["batch_of_the_envelope"]["prefix"]
    assert len(batch) == vectors["batch_of_the_envelope"]["length"] == 10 + len(envelope)
    assert decode_batch(batch) == [envelope]


# --- by hand, from the layouts in docs/protocol.md ----------------------------------------


def _split_statement(statement: bytes) -> dict[str, Any]:
    assert statement[:4] == b"HLS1"
    label_len = statement[4]
    pos = 5 + label_len
    label = statement[5:pos].decode("ascii")
    key_id = statement[pos : pos + 16]
    (payload_len,) = struct.unpack(">I", statement[pos + 16 : pos + 20])
    payload_at = pos + 20
    end = payload_at + payload_len
    assert len(statement) == end + 64 + 3309
    return {
        "label": label,
        "key_id": key_id,
        "payload": statement[payload_at:end],
        "signed_part": statement[:end],
        "ed25519": statement[end : end + 64],
        "mldsa65": statement[end + 64 :],
    }


@pytest.mark.parametrize(
    ("record", "signer"),
    [
        ("message", "washington"),
        ("delivered_receipt", "moscow"),
        ("acknowledged_receipt", "moscow"),
        ("heartbeat", "washington"),
        ("tree_head", "washington"),
    ],
)
def test_statement_layout_and_signatures_by_hand(vectors, record, signer):
    parts = _split_statement(bytes.fromhex(vectors[record]["statement"]))
    party = vectors["parties"][signer]
    assert parts["label"] == vectors[record]["label"]
    assert parts["key_id"].hex() == party["key_id"]
    assert parts["payload"].decode("utf-8") == vectors[record]["payload"]
    signed = b"hotline signed statement v1\x00" + parts["signed_part"]
    ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(party["public"]["ed25519"])).verify(
        parts["ed25519"], signed
    )
    mldsa.MLDSA65PublicKey.from_public_bytes(bytes.fromhex(party["public"]["mldsa65"])).verify(
        parts["mldsa65"], signed, context=b"hotline-v1"
    )


def test_key_id_and_fingerprint_derivation_by_hand(vectors):
    for party in vectors["parties"].values():
        public = {k: bytes.fromhex(v) for k, v in party["public"].items()}
        key_id = hashlib.sha256(b"hotline key id v1\x00" + public["ed25519"] + public["mldsa65"])
        assert key_id.digest()[:16].hex() == party["key_id"]
        digest = hashlib.sha256(
            b"hotline fingerprint v1\x00"
            + party["name"].encode("ascii")
            + b"\x00"
            + public["ed25519"]
            + public["mldsa65"]
            + public["mlkem768"]
            + public["x25519"]
        ).digest()
        assert digest.hex() == party["fingerprint_input_sha256"]
        groups = [int.from_bytes(digest[5 * i : 5 * i + 5], "big") % 100_000 for i in range(6)]
        assert " ".join(f"{g:05d}" for g in groups) == party["fingerprint"]


def test_card_file_layout_by_hand(vectors):
    for party in vectors["parties"].values():
        wrapper = json.loads(party["card_file"])
        assert list(wrapper) == ["hotline_card", "statement"] and wrapper["hotline_card"] == 1
        statement = base64.b64decode(wrapper["statement"], validate=True)
        parts = _split_statement(statement)
        assert parts["label"] == "card"
        payload = json.loads(parts["payload"])
        assert payload["name"] == party["name"]
        assert {k: base64.b64decode(v).hex() for k, v in payload["keys"].items()} == party["public"]


def test_envelope_layout_and_hpke_by_hand(vectors):
    moscow = vectors["parties"]["moscow"]
    envelope = bytes.fromhex(vectors["envelope"]["sealed"])
    assert envelope[:4] == b"HLE1"
    (header_len,) = struct.unpack(">H", envelope[4:6])
    header = envelope[6 : 6 + header_len]
    assert header.decode("utf-8") == vectors["envelope"]["header"]
    assert envelope[: 6 + header_len].hex() == vectors["envelope"]["prefix"]
    info = b"hotline envelope v1\x00" + envelope[: 6 + header_len]
    assert info.hex() == vectors["envelope"]["hpke_info"]
    ciphertext = envelope[6 + header_len :]
    plaintext_len = len(bytes.fromhex(vectors["envelope"]["opens_to"]))
    assert len(ciphertext) == 1120 + plaintext_len + 16  # enc || ct || tag
    key = hpke.MLKEM768X25519PrivateKey(
        mlkem.MLKEM768PrivateKey.from_seed_bytes(bytes.fromhex(moscow["private"]["mlkem768_seed"])),
        x25519.X25519PrivateKey.from_private_bytes(
            bytes.fromhex(moscow["private"]["x25519_private"])
        ),
    )
    suite = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
    assert suite.decrypt(ciphertext, key, info=info).hex() == vectors["envelope"]["opens_to"]


# --- regeneration --------------------------------------------------------------------------


def test_every_deterministic_part_is_unchanged(vectors):
    reference = (
        bytes.fromhex(vectors["message"]["statement"]),
        bytes.fromhex(vectors["envelope"]["sealed"]),
        bytes.fromhex(vectors["delivered_receipt"]["statement"]),
    )
    fresh = generate.build(reference)
    assert generate.deterministic(fresh) == generate.deterministic(vectors), (
        "the wire format changed: if on purpose, run tests/vectors/generate.py and update "
        "docs/protocol.md in the same commit"
    )


def test_ml_dsa_signing_is_hedged_and_ed25519_is_not():
    """What docs/protocol.md §2.4 says about reproducibility, checked against the library."""
    key = generate.identity("washington").signing
    first, second = key.sign(Purpose.MESSAGE, b"{}"), key.sign(Purpose.MESSAGE, b"{}")
    assert first[:-3309] == second[:-3309]  # header, payload and Ed25519 signature
    assert first[-3309:] != second[-3309:]  # ML-DSA-65: fresh randomness each time
    for statement in (first, second):
        verify_statement(statement, Purpose.MESSAGE, key.public)
