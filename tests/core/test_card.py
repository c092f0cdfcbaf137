"""Contact cards and fingerprints."""

from __future__ import annotations

import base64
import contextlib
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotline.core.card import (
    Identity,
    make_card,
    normalize_fingerprint,
    parse_card_file,
)
from hotline.errors import ErrorCode, HotlineError, InputError, VerificationError, WireError

NOW = datetime(2026, 11, 26, tzinfo=UTC)


@pytest.fixture(scope="module")
def washington():
    return Identity.generate("washington")


def test_card_round_trip_and_fingerprint(washington):
    card = make_card(
        washington,
        display_names={"en": "Washington", "ru": "Вашингтон"},
        endpoints=["http://127.0.0.1:8401"],
        created=NOW,
    )
    again = parse_card_file(card.to_file_bytes())
    assert again.fingerprint == card.fingerprint
    assert again.display_names["ru"] == "Вашингтон"
    groups = card.fingerprint.split(" ")
    assert len(groups) == 6 and all(len(g) == 5 and g.isdigit() for g in groups)


def test_fingerprint_does_not_depend_on_endpoints(washington):
    a = make_card(washington, display_names={}, endpoints=["http://a:1"], created=NOW)
    b = make_card(washington, display_names={}, endpoints=["http://b:2"], created=NOW)
    assert a.fingerprint == b.fingerprint
    other = make_card(Identity.generate("washington"), display_names={}, endpoints=[], created=NOW)
    assert other.fingerprint != a.fingerprint


def test_card_with_substituted_key_is_refused(washington):
    card = make_card(washington, display_names={}, endpoints=[], created=NOW)
    wrapper = json.loads(card.to_file_bytes())
    statement = bytearray(base64.b64decode(wrapper["statement"]))
    # Replace the X25519 key inside the signed payload: the self-signature no longer holds.
    payload_start = statement.index(b'{"v"')
    text = statement[payload_start:].split(b"}}")[0]
    key_at = text.index(b'"x25519":"') + len(b'"x25519":"') + payload_start
    statement[key_at] = ord("A") if statement[key_at] != ord("A") else ord("B")
    wrapper["statement"] = base64.b64encode(bytes(statement)).decode()
    with pytest.raises(HotlineError) as e:
        parse_card_file(json.dumps(wrapper).encode())
    assert e.value.code in (ErrorCode.BAD_SIGNATURE, ErrorCode.MALFORMED)


def test_card_signed_by_another_key_is_refused(washington):
    card = make_card(washington, display_names={}, endpoints=[], created=NOW)
    impostor = Identity.generate("washington")
    forged = impostor.signing.sign  # a statement with washington's payload, impostor's signature
    label_len = card.statement[4]
    start = 5 + label_len + 16 + 4
    payload = card.statement[start : len(card.statement) - 64 - 3309]
    forged_statement = forged(card_purpose(), payload)
    wrapper = {"hotline_card": 1, "statement": base64.b64encode(forged_statement).decode()}
    with pytest.raises(VerificationError):
        parse_card_file(json.dumps(wrapper).encode())


def card_purpose():
    from hotline.core.keys import Purpose

    return Purpose.CARD


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{}",
        b"[]",
        b'{"hotline_card":1}',
        b'{"hotline_card":1,"statement":"!!"}',
        b'{"hotline_card":2,"statement":""}',
        b'{"hotline_card":1,"statement":"","x":1}',
        b'{"hotline_card":1,"hotline_card":1,"statement":""}',
        b"\xff\xfe",
    ],
)
def test_malformed_card_files_get_typed_errors(data):
    with pytest.raises(HotlineError):
        parse_card_file(data)


@given(st.binary(max_size=300))
def test_card_parser_never_crashes(data):
    with contextlib.suppress(HotlineError):
        parse_card_file(data)


def test_fingerprint_normalization():
    assert normalize_fingerprint("12345-67890 12345 67890 1234567890") == (
        "12345 67890 12345 67890 12345 67890"
    )
    with pytest.raises(InputError):
        normalize_fingerprint("1234")


def test_card_carries_the_tls_certificate_under_its_signature(washington):
    from hotline.link.tls import make_certificate, make_tls_key, spki_sha256

    cert = make_certificate("washington", make_tls_key())
    card = make_card(
        washington,
        display_names={},
        endpoints=["https://127.0.0.1:8401"],
        created=NOW,
        tls_cert=cert,
    )
    again = parse_card_file(card.to_file_bytes())
    assert again.tls_cert == cert
    assert len(spki_sha256(cert)) == 64
    # The fingerprint covers the keys, not the certificate: a new TLS key needs no new check.
    plain = make_card(washington, display_names={}, endpoints=[], created=NOW)
    assert plain.tls_cert is None and plain.fingerprint == again.fingerprint
    assert b'"tls"' not in plain.statement  # a card without TLS is as it always was


@pytest.mark.parametrize(
    "bad",
    [b"not a certificate", b"\x30\x03\x02\x01\x00"],
)
def test_a_card_with_a_bad_tls_certificate_is_refused(washington, bad):
    with pytest.raises(WireError):
        make_card(washington, display_names={}, endpoints=[], created=NOW, tls_cert=bad)


def test_a_card_with_a_non_p256_tls_key_is_refused(washington):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "x")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    with pytest.raises(WireError, match="P-256"):
        make_card(washington, display_names={}, endpoints=[], created=NOW, tls_cert=cert)
