"""The envelope: sealing, opening, and every way a forged or damaged envelope must fail."""

from __future__ import annotations

import contextlib
import struct
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hotline.core.card import Card, Identity, make_card
from hotline.core.encoding import encode_json
from hotline.core.envelope import (
    Kind,
    MessagePayload,
    ReceiptItem,
    ReceiptKind,
    ReceiptPayload,
    decode_batch,
    encode_batch,
    new_id,
    open_envelope,
    read_header,
    seal,
    sign_message,
    sign_receipt,
)
from hotline.core.keys import Purpose, SigningPublicKey, verify_statement
from hotline.errors import ErrorCode, HotlineError, VerificationError, WireError

NOW = datetime(2026, 11, 26, 3, 12, tzinfo=UTC)


def _card(identity: Identity) -> Card:
    return make_card(identity, display_names={"en": identity.name}, endpoints=[], created=NOW)


@pytest.fixture(scope="module")
def parties() -> dict[str, tuple[Identity, Card]]:
    out = {}
    for name in ("washington", "moscow", "beijing"):
        identity = Identity.generate(name)
        out[name] = (identity, _card(identity))
    return out


def _keys(parties: dict[str, tuple[Identity, Card]]):
    def lookup(name: str) -> SigningPublicKey | None:
        return parties[name][1].signing_key if name in parties else None

    return lookup


def _message(parties, *, sender="washington", recipient="moscow", text="confirm", seq=1):
    identity = parties[sender][0]
    message_id = new_id(NOW)
    statement = sign_message(
        identity,
        to=recipient,
        message_id=message_id,
        seq=seq,
        created=NOW,
        msg_type="free_text",
        priority="flash",
        body={"text": text},
    )
    envelope = seal(
        kind=Kind.MESSAGE,
        sender=sender,
        recipient=recipient,
        envelope_id=message_id,
        statement=statement,
        recipient_key=parties[recipient][1].encryption_key,
    )
    return message_id, envelope


def test_round_trip(parties):
    message_id, envelope = _message(parties, text="Unannounced launch at 03:12 UTC")
    opened = open_envelope(parties["moscow"][0], envelope, _keys(parties))
    assert isinstance(opened.payload, MessagePayload)
    assert opened.payload.id == message_id
    assert opened.payload.from_ == "washington"
    assert opened.payload.body == {"text": "Unannounced launch at 03:12 UTC"}
    assert opened.payload.seq == 1
    assert opened.envelope == envelope


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_single_bit_flip_is_rejected(parties, data):
    _, envelope = _message(parties)
    position = data.draw(st.integers(0, len(envelope) - 1))
    bit = data.draw(st.integers(0, 7))
    damaged = bytearray(envelope)
    damaged[position] ^= 1 << bit
    with pytest.raises(HotlineError):
        open_envelope(parties["moscow"][0], bytes(damaged), _keys(parties))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_truncation_is_rejected(parties, data):
    _, envelope = _message(parties)
    cut = data.draw(st.integers(0, len(envelope) - 1))
    with pytest.raises(HotlineError):
        open_envelope(parties["moscow"][0], envelope[:cut], _keys(parties))


def _rewrite_header(envelope: bytes, **changes: str) -> bytes:
    (length,) = struct.unpack(">H", envelope[4:6])
    header = read_header(envelope)
    fields = {
        "v": 1,
        "kind": header.kind.value,
        "from": header.sender,
        "to": header.recipient,
        "id": header.envelope_id,
    }
    fields.update(changes)
    new_header = encode_json(fields)
    return envelope[:4] + struct.pack(">H", len(new_header)) + new_header + envelope[6 + length :]


def test_swapped_sender_and_recipient_is_rejected(parties):
    _, envelope = _message(parties)
    swapped = _rewrite_header(envelope, **{"from": "moscow", "to": "washington"})
    # washington cannot open it (sealed to moscow), and moscow sees itself named as the sender.
    with pytest.raises(VerificationError) as e:
        open_envelope(parties["washington"][0], swapped, _keys(parties))
    assert e.value.code == ErrorCode.DECRYPT_FAILED


def test_header_rewritten_to_another_sender_fails_decryption(parties):
    _, envelope = _message(parties)
    forged = _rewrite_header(envelope, **{"from": "beijing"})
    with pytest.raises(VerificationError) as e:
        open_envelope(parties["moscow"][0], forged, _keys(parties))
    assert e.value.code == ErrorCode.DECRYPT_FAILED


def test_sealed_for_moscow_cannot_be_opened_by_a_third_node(parties):
    _, envelope = _message(parties)
    with pytest.raises(VerificationError) as e:
        open_envelope(parties["beijing"][0], envelope, _keys(parties))
    assert e.value.code == ErrorCode.WRONG_RECIPIENT
    # Even if beijing rewrites the header to name itself, it cannot decrypt.
    readdressed = _rewrite_header(envelope, to="beijing")
    with pytest.raises(VerificationError) as e:
        open_envelope(parties["beijing"][0], readdressed, _keys(parties))
    assert e.value.code == ErrorCode.DECRYPT_FAILED


def test_unknown_sender_is_rejected_before_decryption(parties):
    _, envelope = _message(parties)
    with pytest.raises(VerificationError) as e:
        open_envelope(parties["moscow"][0], envelope, lambda name: None)
    assert e.value.code == ErrorCode.UNKNOWN_SENDER


def test_a_message_signed_by_someone_else_is_rejected(parties):
    # beijing signs a message claiming to be from washington and seals it properly to moscow.
    message_id = new_id(NOW)
    beijing = parties["beijing"][0]
    impostor = Identity("washington", beijing.signing, beijing.decryption)
    statement = sign_message(
        impostor,
        to="moscow",
        message_id=message_id,
        seq=1,
        created=NOW,
        msg_type="free_text",
        priority="flash",
        body={"text": "stand down"},
    )
    envelope = seal(
        kind=Kind.MESSAGE,
        sender="washington",
        recipient="moscow",
        envelope_id=message_id,
        statement=statement,
        recipient_key=parties["moscow"][1].encryption_key,
    )
    with pytest.raises(VerificationError) as e:
        open_envelope(parties["moscow"][0], envelope, _keys(parties))
    assert e.value.code == ErrorCode.UNKNOWN_KEY


def test_receipt_cannot_be_replayed_as_a_message(parties):
    receipt_id = new_id(NOW)
    item = ReceiptItem(id=new_id(NOW), seq=1, envelope_hash="00" * 32, signed_hash="11" * 32)
    statement = sign_receipt(
        parties["moscow"][0],
        to="washington",
        receipt_id=receipt_id,
        created=NOW,
        kind=ReceiptKind.DELIVERED,
        items=[item],
    )
    # Wrapped as a message envelope, the signature's purpose label gives it away.
    as_message = seal(
        kind=Kind.MESSAGE,
        sender="moscow",
        recipient="washington",
        envelope_id=receipt_id,
        statement=statement,
        recipient_key=parties["washington"][1].encryption_key,
    )
    with pytest.raises(VerificationError) as e:
        open_envelope(parties["washington"][0], as_message, _keys(parties))
    assert e.value.code == ErrorCode.WRONG_PURPOSE
    # As a receipt it opens fine.
    as_receipt = seal(
        kind=Kind.RECEIPT,
        sender="moscow",
        recipient="washington",
        envelope_id=receipt_id,
        statement=statement,
        recipient_key=parties["washington"][1].encryption_key,
    )
    opened = open_envelope(parties["washington"][0], as_receipt, _keys(parties))
    assert isinstance(opened.payload, ReceiptPayload)


def test_signature_purposes_are_separated(parties):
    identity = parties["washington"][0]
    statement = identity.signing.sign(Purpose.HEARTBEAT, b"{}")
    with pytest.raises(VerificationError) as e:
        verify_statement(statement, Purpose.MESSAGE, identity.signing.public)
    assert e.value.code == ErrorCode.WRONG_PURPOSE


def test_both_signatures_are_required(parties):
    identity = parties["washington"][0]
    statement = bytearray(identity.signing.sign(Purpose.MESSAGE, b'{"a":1}'))
    for offset in (-3309 - 1, -1):  # last byte of Ed25519, last byte of ML-DSA
        damaged = bytearray(statement)
        damaged[offset] ^= 0x01
        with pytest.raises(VerificationError) as e:
            verify_statement(bytes(damaged), Purpose.MESSAGE, identity.signing.public)
        assert e.value.code == ErrorCode.BAD_SIGNATURE


def test_signed_id_must_match_header(parties):
    identity = parties["washington"][0]
    statement = sign_message(
        identity,
        to="moscow",
        message_id=new_id(NOW),
        seq=1,
        created=NOW,
        msg_type="free_text",
        priority="flash",
        body={"text": "x"},
    )
    envelope = seal(
        kind=Kind.MESSAGE,
        sender="washington",
        recipient="moscow",
        envelope_id=new_id(NOW),
        statement=statement,
        recipient_key=parties["moscow"][1].encryption_key,
    )
    with pytest.raises(VerificationError) as e:
        open_envelope(parties["moscow"][0], envelope, _keys(parties))
    assert e.value.code == ErrorCode.HEADER_MISMATCH


def test_oversized_envelope_is_refused_before_parsing(parties):
    with pytest.raises(WireError) as e:
        open_envelope(parties["moscow"][0], b"HLE1" + b"\x00" * (2 * 1024 * 1024), _keys(parties))
    assert e.value.code == ErrorCode.TOO_LARGE


@given(st.lists(st.binary(max_size=300), max_size=20))
def test_batch_round_trip(envelopes):
    assert decode_batch(encode_batch(envelopes)) == envelopes


@given(st.binary(max_size=400))
def test_batch_parser_never_crashes(data):
    with contextlib.suppress(WireError):
        decode_batch(data)


@given(st.binary(max_size=400))
def test_header_parser_never_crashes(data):
    with contextlib.suppress(WireError):
        read_header(data)


def test_a_refused_header_is_refused_every_time(parties):
    """Parsed headers are kept (``_parse_header``): a refusal is not, and a good header read
    again is the same."""
    _, envelope = _message(parties)
    bad = _rewrite_header(envelope, to="not a name!")
    for _ in range(2):
        with pytest.raises(WireError, match="envelope header"):
            read_header(bad)
    assert read_header(envelope) == read_header(envelope)


def test_uuid7_ids_are_time_ordered_and_versioned():
    ids = [new_id(datetime(2026, 1, 1, 0, 0, s, tzinfo=UTC)) for s in range(5)]
    assert ids == sorted(ids)
    assert all(i[14] == "7" for i in ids)
