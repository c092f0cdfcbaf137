"""Property tests of the core's parsers of untrusted bytes, where tests/core/test_envelope.py,
test_card.py and test_merkle.py leave gaps: signed statements, peer-signed payloads (messages,
receipts, heartbeats), receipts through an envelope, tree heads, cosignatures, cards, proof
replies and wire times.

Three invariants throughout: what we write parses back to the same value; any change to signed
bytes is refused with a ``HotlineError``; arbitrary bytes raise nothing but a ``HotlineError``.
"""

from __future__ import annotations

import base64
import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hotline.core import encoding
from hotline.core.card import (
    NAME_PATTERN,
    Identity,
    make_card,
    parse_card_file,
    parse_card_statement,
)
from hotline.core.encoding import b64encode, encode_json, format_time, parse_time
from hotline.core.envelope import (
    Kind,
    ReceiptItem,
    ReceiptKind,
    ReceiptPayload,
    new_id,
    open_envelope,
    parse_payload,
    seal,
    sign_receipt,
)
from hotline.core.keys import Purpose, SigningPublicKey, peek_statement, verify_statement
from hotline.core.treehead import sign_tree_head, verify_tree_head
from hotline.core.witness import cosign, verify_cosignature
from hotline.errors import ErrorCode, HotlineError, VerificationError, WireError
from hotline.node.runtime import decode_proof_reply

NOW = datetime(2026, 11, 26, 3, 12, tzinfo=UTC)
# Signing costs about a millisecond (ML-DSA-65): keep the signed examples few but varied.
SIGNED = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
CHEAP = settings(max_examples=100, deadline=None)

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
TIMES = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(9000, 1, 1), timezones=st.just(UTC)
)
HEX64 = st.text("0123456789abcdef", min_size=64, max_size=64)


@pytest.fixture(scope="module")
def washington() -> Identity:
    return Identity.generate("washington")


@pytest.fixture(scope="module")
def moscow() -> Identity:
    return Identity.generate("moscow")


def _keys(identity: Identity):
    def lookup(name: str) -> SigningPublicKey | None:
        return identity.signing.public if name == identity.name else None

    return lookup


def _mutations(data: bytes) -> st.SearchStrategy[bytes]:
    """Every kind of damage to signed bytes: a changed byte, a cut, an insertion."""
    position = st.integers(0, len(data) - 1)
    changed = st.tuples(position, st.integers(1, 255)).map(
        lambda pv: data[: pv[0]] + bytes([data[pv[0]] ^ pv[1]]) + data[pv[0] + 1 :]
    )
    cut = st.integers(0, len(data) - 1).map(lambda n: data[:n])
    inserted = st.tuples(position, st.binary(min_size=1, max_size=8)).map(
        lambda pb: data[: pb[0]] + pb[1] + data[pb[0] :]
    )
    return st.one_of(changed, cut, inserted)


# -- signed statements ------------------------------------------------------------------------


@SIGNED
@given(purpose=st.sampled_from(list(Purpose)), payload=st.binary(max_size=2000))
def test_statement_round_trip_for_its_purpose_only(washington, purpose, payload):
    statement = washington.signing.sign(purpose, payload)
    checked = verify_statement(statement, purpose, washington.signing.public)
    assert (checked.payload, checked.raw, checked.purpose) == (payload, statement, purpose)
    assert peek_statement(statement) == (purpose.value, washington.signing.public.key_id, payload)
    for other in Purpose:
        if other != purpose:
            with pytest.raises(VerificationError):
                verify_statement(statement, other, washington.signing.public)


@SIGNED
@given(data=st.data())
def test_any_change_to_a_statement_is_refused(washington, data):
    statement = washington.signing.sign(Purpose.MESSAGE, b'{"v":1}')
    damaged = data.draw(_mutations(statement))
    with pytest.raises(HotlineError):
        verify_statement(damaged, Purpose.MESSAGE, washington.signing.public)


@CHEAP
@given(
    st.binary(max_size=4000) | st.binary(min_size=3400, max_size=3600).map(lambda b: b"HLS1" + b)
)
def test_arbitrary_bytes_are_not_a_statement(washington, data):
    with contextlib.suppress(HotlineError):
        peek_statement(data)
    with pytest.raises(HotlineError):
        verify_statement(data, Purpose.MESSAGE, washington.signing.public)


# -- payloads a peer signs (the signature says who, not that the content is sane) -------------

ID = "019ac2e4-8f00-7000-8000-000000000001"
VALID_PAYLOADS: dict[Kind, dict[str, Any]] = {
    Kind.MESSAGE: {
        "v": 1,
        "id": ID,
        "from": "washington",
        "to": "moscow",
        "seq": 3,
        "created": "2026-11-26T03:12:00.000000Z",
        "type": "free_text",
        "priority": "flash",
        "body": {"text": "confirm"},
        "author": "duty-officer",
    },
    Kind.RECEIPT: {
        "v": 1,
        "id": ID,
        "from": "moscow",
        "to": "washington",
        "created": "2026-11-26T03:12:00.000000Z",
        "kind": "delivered",
        "items": [{"id": ID, "seq": 1, "envelope_hash": "a" * 64, "signed_hash": "b" * 64}],
    },
    Kind.HEARTBEAT: {
        "v": 1,
        "id": ID,
        "from": "washington",
        "to": "moscow",
        "created": "2026-11-26T03:12:00.000000Z",
        "nonce": "00",
        "expired": [2],
    },
}


@st.composite
def damaged_payloads(draw: st.DrawFn) -> tuple[Kind, bytes]:
    """A valid payload with one field replaced, removed or added, as a hostile peer signs it."""
    kind = draw(st.sampled_from(list(VALID_PAYLOADS)))
    payload = dict(VALID_PAYLOADS[kind])
    key = draw(st.sampled_from([*payload, "extra"]))
    action = draw(st.sampled_from(["replace", "remove"]))
    if action == "remove":
        payload.pop(key, None)
    else:
        payload[key] = draw(JSON)
    return kind, encode_json(payload)


@CHEAP
@given(damaged_payloads())
def test_peer_signed_payloads_parse_or_get_a_typed_error(case):
    kind, data = case
    with contextlib.suppress(HotlineError):
        payload = parse_payload(kind, data)
        assert NAME_PATTERN.fullmatch(payload.from_) and NAME_PATTERN.fullmatch(payload.to)


@CHEAP
@given(st.sampled_from(list(Kind)), st.binary(max_size=300))
def test_arbitrary_payload_bytes_get_a_typed_error(kind, data):
    with contextlib.suppress(HotlineError):
        parse_payload(kind, data)


@pytest.mark.parametrize("kind", list(VALID_PAYLOADS))
def test_valid_payloads_parse(kind):
    assert parse_payload(kind, encode_json(VALID_PAYLOADS[kind])).id == ID


# -- receipts: what one side signs, the other reads back exactly ------------------------------

ITEMS = st.lists(
    st.builds(
        ReceiptItem,
        id=st.builds(lambda n: new_id(NOW + timedelta(milliseconds=n)), st.integers(0, 10**6)),
        seq=st.integers(1, 2**40),
        envelope_hash=HEX64,
        signed_hash=HEX64,
        leaf_index=st.integers(0, 99),
    ),
    min_size=1,
    max_size=5,
)


@SIGNED
@given(items=ITEMS, created=TIMES, root=st.binary(min_size=32, max_size=32))
def test_receipt_round_trip_through_an_envelope(washington, moscow, items, created, root):
    receipt_id = new_id(NOW)
    statement = sign_receipt(
        moscow,
        to="washington",
        receipt_id=receipt_id,
        created=created,
        kind=ReceiptKind.DELIVERED,
        items=items,
        tree_size=100,
        tree_root=root,
    )
    envelope = seal(
        kind=Kind.RECEIPT,
        sender="moscow",
        recipient="washington",
        envelope_id=receipt_id,
        statement=statement,
        recipient_key=washington.decryption.public,
    )
    opened = open_envelope(washington, envelope, _keys(moscow))
    assert isinstance(opened.payload, ReceiptPayload)
    assert opened.payload.items == items
    assert (opened.payload.tree_size, opened.payload.tree_root) == (100, root.hex())
    assert parse_time(opened.payload.created, what="created") == created


@SIGNED
@given(data=st.data())
def test_any_change_to_a_sealed_receipt_is_refused(washington, moscow, data):
    receipt_id = new_id(NOW)
    item = ReceiptItem(id=receipt_id, seq=1, envelope_hash="a" * 64, signed_hash="b" * 64)
    statement = sign_receipt(
        moscow,
        to="washington",
        receipt_id=receipt_id,
        created=NOW,
        kind=ReceiptKind.DELIVERED,
        items=[item],
    )
    envelope = seal(
        kind=Kind.RECEIPT,
        sender="moscow",
        recipient="washington",
        envelope_id=receipt_id,
        statement=statement,
        recipient_key=washington.decryption.public,
    )
    with pytest.raises(HotlineError):
        open_envelope(washington, data.draw(_mutations(envelope)), _keys(moscow))


# -- tree heads and cosignatures ---------------------------------------------------------------


@SIGNED
@given(size=st.integers(0, 2**63 - 1), root=st.binary(min_size=32, max_size=32), time=TIMES)
def test_tree_head_round_trip(washington, size, root, time):
    head = sign_tree_head(washington, size=size, root=root, time=time)
    again = verify_tree_head(head.statement, washington.signing.public, log="washington")
    assert again == head


@SIGNED
@given(data=st.data())
def test_any_change_to_a_tree_head_or_cosignature_is_refused(washington, moscow, data):
    head = sign_tree_head(washington, size=7, root=bytes(32), time=NOW)
    with pytest.raises(HotlineError):
        verify_tree_head(
            data.draw(_mutations(head.statement)), washington.signing.public, log="washington"
        )
    cosignature = cosign(moscow, log="washington", size=7, root=bytes(32), time=NOW)
    with pytest.raises(HotlineError):
        verify_cosignature(
            data.draw(_mutations(cosignature.statement)),
            moscow.signing.public,
            witness="moscow",
            log="washington",
        )


@st.composite
def odd_head_payloads(draw: st.DrawFn) -> dict[str, Any]:
    """Tree head or cosignature payloads a peer (or a witness) might sign to trip us up."""
    payload: dict[str, Any] = {
        "v": 1,
        "witness": "moscow",
        "log": "washington",
        "size": 7,
        "root": "00" * 32,
        "time": "2026-11-26T03:12:00Z",
    }
    key = draw(st.sampled_from(sorted(payload)))
    payload[key] = draw(
        JSON
        | st.sampled_from(
            [
                "0001-01-01T00:00:00+01:00",  # no UTC instant: used to raise OverflowError
                "9999-12-31T23:59:59-01:00",
                "2026-11-26T03:12:00",
                -1,
                2**63,
                "zz" * 32,
                "00" * 31,
            ]
        )
    )
    return payload


@SIGNED
@given(payload=odd_head_payloads())
def test_peer_signed_heads_and_cosignatures_parse_or_get_a_typed_error(washington, moscow, payload):
    witness_only = {k: v for k, v in payload.items() if k != "witness"}
    head = washington.signing.sign(Purpose.TREE_HEAD, encode_json(witness_only))
    with contextlib.suppress(HotlineError):
        verify_tree_head(head, washington.signing.public, log="washington")
    cosignature = moscow.signing.sign(Purpose.COSIGNATURE, encode_json(payload))
    with contextlib.suppress(HotlineError):
        verify_cosignature(cosignature, moscow.signing.public, witness="moscow", log="washington")


def test_a_head_time_with_no_utc_instant_is_a_wire_error(washington):
    payload = {"v": 1, "log": "washington", "size": 1, "root": "00" * 32}
    head = washington.signing.sign(
        Purpose.TREE_HEAD, encode_json({**payload, "time": "0001-01-01T00:00:00+01:00"})
    )
    with pytest.raises(WireError):
        verify_tree_head(head, washington.signing.public, log="washington")


# -- cards -------------------------------------------------------------------------------------

DISPLAY_NAMES = st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=128), max_size=8)
ENDPOINTS = st.lists(
    st.builds(
        lambda host, port: f"https://{host}:{port}",
        st.from_regex(r"[a-z0-9.-]{1,40}", fullmatch=True),
        st.integers(1, 65535),
    ),
    max_size=8,
)


@SIGNED
@given(display_names=DISPLAY_NAMES, endpoints=ENDPOINTS, created=TIMES)
def test_card_round_trip(washington, display_names, endpoints, created):
    card = make_card(washington, display_names=display_names, endpoints=endpoints, created=created)
    again = parse_card_file(card.to_file_bytes())
    assert again == card
    assert again.fingerprint == card.fingerprint


@SIGNED
@given(data=st.data())
def test_any_change_to_a_card_is_refused(washington, data):
    card = make_card(washington, display_names={"en": "W"}, endpoints=[], created=NOW)
    damaged = data.draw(_mutations(card.statement))
    with pytest.raises(HotlineError):
        parse_card_statement(damaged)
    with pytest.raises(HotlineError):
        parse_card_file(encode_json({"hotline_card": 1, "statement": b64encode(damaged)}))


@SIGNED
@given(
    field=st.sampled_from(["name", "role", "endpoints", "display_names", "created", "v"]),
    value=JSON,
)
def test_self_signed_cards_with_odd_fields_get_a_typed_error(washington, field, value):
    keys = {
        "ed25519": b64encode(washington.signing.public.ed25519),
        "mldsa65": b64encode(washington.signing.public.mldsa65),
        "mlkem768": b64encode(washington.decryption.public.mlkem768),
        "x25519": b64encode(washington.decryption.public.x25519),
    }
    payload = {
        "v": 1,
        "name": "washington",
        "display_names": {},
        "role": "node",
        "keys": keys,
        "endpoints": [],
        "created": "2026-11-26T03:12:00Z",
        field: value,
    }
    statement = washington.signing.sign(Purpose.CARD, encode_json(payload))
    with contextlib.suppress(HotlineError):
        parse_card_statement(statement)


@CHEAP
@given(JSON)
def test_arbitrary_json_is_not_a_card_file(value):
    with pytest.raises(HotlineError):
        parse_card_file(encode_json(value))


# -- proof replies and wire times --------------------------------------------------------------


@CHEAP
@given(st.lists(st.binary(min_size=32, max_size=32), max_size=64), st.integers(0, 2**63))
def test_proof_reply_round_trip(proof, size):
    reply = encode_json({"first": 0, "second": size, "proof": [b64encode(h) for h in proof]})
    assert decode_proof_reply(reply) == proof


@CHEAP
@given(JSON | st.lists(st.text(max_size=50)).map(lambda p: {"first": 1, "second": 2, "proof": p}))
def test_odd_proof_replies_get_a_typed_error(value):
    with contextlib.suppress(HotlineError):
        for h in decode_proof_reply(encode_json(value)):
            assert len(h) == 32


@CHEAP
@given(TIMES)
def test_wire_time_round_trip(moment):
    assert parse_time(format_time(moment), what="t") == moment


@CHEAP
@given(
    st.text(max_size=40)
    | st.from_regex(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", fullmatch=True)
)
def test_arbitrary_text_is_a_time_or_a_wire_error(text):
    with contextlib.suppress(WireError):
        assert parse_time(text, what="t").tzinfo is UTC


def test_base64_in_cards_is_strict(washington):
    card = make_card(washington, display_names={}, endpoints=[], created=NOW)
    text = base64.b64encode(card.statement).decode()
    for bad in (text + "!", text[:-1], " " + text):
        with pytest.raises(WireError):
            parse_card_file(encode_json({"hotline_card": 1, "statement": bad}))


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("id", "not-a-uuid", "heartbeat id"),
        ("id", "x" * 10_000, "heartbeat id"),
        ("cosignatures", ["QQ=="] * 9, "more than 8 cosignatures"),
    ],
)
def test_a_heartbeat_with_an_odd_id_or_too_many_cosignatures_is_malformed(field, value, says):
    """Heartbeat ids are kept in the store (replay memory) and cosignatures are verified: an id
    that is no UUID, or more cosignatures than the limit, is refused before either happens."""
    payload = {**VALID_PAYLOADS[Kind.HEARTBEAT], field: value}
    with pytest.raises(WireError) as caught:
        parse_payload(Kind.HEARTBEAT, encode_json(payload))
    assert caught.value.code == ErrorCode.MALFORMED and says in caught.value.detail


_JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0xFFFF), max_size=6),
    st.sampled_from(["\ud800", "x\udfff", "[{", "\\u"]),  # lone surrogates, brackets in text
)
_JSON_VALUES = st.recursive(
    _JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=40,
)


def _decoded(data: bytes) -> tuple[str, object]:
    try:
        return "value", encoding.decode_json(data, Any, what="test")
    except WireError as e:
        return "refused", e.detail


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=_JSON_VALUES,
    depth=st.integers(min_value=0, max_value=20),
    ascii_only=st.booleans(),
)
def test_the_walk_is_skipped_only_where_it_would_find_nothing(value, depth, ascii_only):
    """``decode_json`` skips its walk of the parsed value when the bytes show it could find
    nothing (``_plainly_within_limits``): with and without the shortcut, every document is
    decoded to the same value or refused with the same reason."""
    for _ in range(depth):
        value = [value]
    data = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    with_shortcut = _decoded(data)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(encoding, "_plainly_within_limits", lambda _data: False)
        assert _decoded(data) == with_shortcut
