"""Key events: rotation (cross-signed) and revocation statements, and key standing (pure core)."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hotline.core.card import Identity, make_card
from hotline.core.encoding import b64encode, encode_json, format_time
from hotline.core.keyevents import (
    EventKind,
    KeyStanding,
    KeyState,
    check_key_use,
    event_kind,
    make_revocation,
    make_rotation,
    replay_history,
    signer_at,
    verify_revocation,
    verify_rotation,
)
from hotline.core.keys import Purpose, SigningKey, peek_statement
from hotline.errors import ErrorCode, HotlineError, VerificationError, WireError

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)
WEEK = timedelta(days=7)


def _generation(name: str) -> tuple[Identity, object]:
    identity = Identity.generate(name)
    card = make_card(identity, display_names={}, endpoints=["http://127.0.0.1:1"], created=NOW)
    return identity, card


@pytest.fixture(scope="module")
def moscow():
    old, old_card = _generation("moscow")
    new, new_card = _generation("moscow")
    return old, old_card, new, new_card


def _rotation(moscow, **changes):
    old, _old_card, new, new_card = moscow
    return make_rotation(old, new, new_card, effective=NOW, overlap_end=NOW + WEEK, **changes)


def test_rotation_round_trip(moscow):
    old, _c, new, new_card = moscow
    rotation = verify_rotation(_rotation(moscow), name="moscow", old_key=old.signing.public)
    assert rotation.old_key_id == old.signing.public.key_id
    assert rotation.new_key_id == new.signing.public.key_id
    assert rotation.card.fingerprint == new_card.fingerprint
    assert rotation.overlap_end - rotation.effective == WEEK
    assert event_kind(rotation.statement) is EventKind.ROTATION


def test_rotation_signed_only_by_the_new_key_is_refused(moscow):
    old, _c, new, _new_card = moscow
    # The new key's claim alone, wrapped by the new key again instead of the old one.
    inner = peek_statement(_rotation(moscow))[2]
    forged = new.signing.sign(Purpose.KEY_ROTATION, inner)
    with pytest.raises(VerificationError) as e:
        verify_rotation(forged, name="moscow", old_key=old.signing.public)
    assert e.value.code == ErrorCode.UNKNOWN_KEY


def test_rotation_signed_only_by_the_old_key_is_refused(moscow):
    """A thief's key inserted under a genuine old-key signature: the inner claim is signed by a
    key that is not the one its card names, so the cross-signature fails."""
    old, _c, _new, new_card = moscow
    outsider = SigningKey.generate()
    payload = encode_json(
        {
            "v": 1,
            "name": "moscow",
            "old_key_id": old.signing.public.key_id.hex(),
            "new_key_id": new_card.signing_key.key_id.hex(),
            "card": b64encode(new_card.statement),
            "effective": format_time(NOW),
            "overlap_end": format_time(NOW + WEEK),
        }
    )
    forged = old.signing.sign(
        Purpose.KEY_ROTATION, outsider.sign(Purpose.KEY_ROTATION_NEW, payload)
    )
    with pytest.raises(VerificationError) as e:
        verify_rotation(forged, name="moscow", old_key=old.signing.public)
    assert e.value.code == ErrorCode.UNKNOWN_KEY


def test_rotation_of_another_node_or_from_another_key_is_refused(moscow):
    old, *_ = moscow
    data = _rotation(moscow)
    with pytest.raises(VerificationError) as e:
        verify_rotation(data, name="washington", old_key=old.signing.public)
    assert e.value.code == ErrorCode.HEADER_MISMATCH
    with pytest.raises(VerificationError) as e:
        verify_rotation(data, name="moscow", old_key=SigningKey.generate().public)
    assert e.value.code == ErrorCode.UNKNOWN_KEY


def test_rotation_overlap_must_be_positive_and_bounded(moscow):
    old, _c, new, new_card = moscow
    for end in (NOW, NOW - WEEK, NOW + timedelta(days=91)):
        with pytest.raises(WireError):
            make_rotation(old, new, new_card, effective=NOW, overlap_end=end)


def test_revocation_round_trip_and_forgeries(moscow):
    old, _c, new, new_card = moscow
    data = make_revocation(
        new, new_card, revoked_key_id=old.signing.public.key_id, compromised_at=NOW, time=NOW
    )
    revocation = verify_revocation(data, name="moscow")
    assert revocation.revoked_key_id == old.signing.public.key_id
    assert revocation.card.fingerprint == new_card.fingerprint
    assert event_kind(data) is EventKind.REVOCATION
    # Signed by a key other than the one its card introduces (e.g. by the thief's old key).
    forged = old.signing.sign(Purpose.KEY_REVOCATION, peek_statement(data)[2])
    with pytest.raises(VerificationError) as e:
        verify_revocation(forged, name="moscow")
    assert e.value.code == ErrorCode.UNKNOWN_KEY
    with pytest.raises(WireError):
        make_revocation(
            new,
            new_card,
            revoked_key_id=old.signing.public.key_id,
            compromised_at=NOW + WEEK,
            time=NOW,
        )


def test_a_revocation_is_not_a_rotation(moscow):
    old, _c, new, new_card = moscow
    data = make_revocation(
        new, new_card, revoked_key_id=old.signing.public.key_id, compromised_at=NOW, time=NOW
    )
    with pytest.raises(VerificationError) as e:
        verify_rotation(data, name="moscow", old_key=new.signing.public)
    assert e.value.code == ErrorCode.WRONG_PURPOSE


def test_key_standing_rules():
    key = b"\x01" * 16
    check_key_use(KeyStanding(key, KeyState.ACTIVE), now=NOW, signed_at=NOW)
    rotated = KeyStanding(key, KeyState.ROTATED, valid_until=NOW + WEEK)
    check_key_use(rotated, now=NOW + WEEK, signed_at=NOW)
    for now, signed in ((NOW + WEEK * 2, NOW), (NOW, NOW + WEEK * 2)):
        with pytest.raises(VerificationError) as e:
            check_key_use(rotated, now=now, signed_at=signed)
        assert e.value.code == ErrorCode.KEY_EXPIRED
    revoked = KeyStanding(key, KeyState.REVOKED, revoked_at=NOW)
    # Refused whatever time the statement claims: the thief chooses that claim.
    for signed in (NOW - WEEK, NOW, NOW + WEEK):
        with pytest.raises(VerificationError) as e:
            check_key_use(revoked, now=NOW + WEEK, signed_at=signed)
        assert e.value.code == ErrorCode.KEY_REVOKED
    check_key_use(revoked, now=NOW, signed_at=NOW, revocation=True)
    for state in (KeyState.PENDING, KeyState.REJECTED):
        with pytest.raises(VerificationError) as e:
            check_key_use(KeyStanding(key, state), now=NOW, signed_at=NOW)
        assert e.value.code == ErrorCode.KEY_UNCONFIRMED


def test_history_replays_rotation_then_revocation(moscow):
    old, old_card, new, _new_card = moscow
    third, third_card = _generation("moscow")
    rotation = _rotation(moscow)
    revocation = make_revocation(
        third,
        third_card,
        revoked_key_id=new.signing.public.key_id,
        compromised_at=NOW + timedelta(days=2),
        time=NOW + timedelta(days=3),
    )
    periods = replay_history(old_card, [rotation, revocation])
    assert [p.key_id for p in periods] == [
        old.signing.public.key_id,
        new.signing.public.key_id,
        third.signing.public.key_id,
    ]
    old_id, new_id = old.signing.public.key_id, new.signing.public.key_id
    assert signer_at(periods, old_id, NOW + timedelta(days=1))[1] is None
    assert "overlap" in (signer_at(periods, old_id, NOW + WEEK * 2)[1] or "")
    assert signer_at(periods, new_id, NOW + timedelta(days=1))[1] is None
    assert "compromised" in (signer_at(periods, new_id, NOW + timedelta(days=2))[1] or "")
    with pytest.raises(VerificationError):
        signer_at(periods, b"\x00" * 16, NOW)
    # Out of order (the revocation names a key the history does not have yet): refused.
    with pytest.raises(VerificationError):
        replay_history(old_card, [revocation])


def test_history_refuses_a_rotation_not_signed_by_the_current_key(moscow):
    _old, _old_card, _new, new_card = moscow
    with pytest.raises(VerificationError):
        replay_history(new_card, [_rotation(moscow)])


_FIELDS = ("v", "name", "old_key_id", "new_key_id", "card", "effective", "overlap_end")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    field=st.sampled_from(_FIELDS),
    value=st.one_of(
        st.none(),
        st.integers(),
        st.text(max_size=40),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    ),
    drop=st.booleans(),
)
def test_rotation_payload_parser_refuses_any_change_with_a_typed_error(field, value, drop):
    """Any field of the new key's claim replaced or missing, re-signed by both genuine keys:
    verification either refuses with a HotlineError or (for an identical value) accepts."""
    old, new, new_card = _FUZZ
    payload = {
        "v": 1,
        "name": "moscow",
        "old_key_id": old.signing.public.key_id.hex(),
        "new_key_id": new.signing.public.key_id.hex(),
        "card": b64encode(new_card.statement),
        "effective": format_time(NOW),
        "overlap_end": format_time(NOW + WEEK),
    }
    original = dict(payload)
    if drop:
        del payload[field]
    else:
        payload[field] = value
    data = old.signing.sign(
        Purpose.KEY_ROTATION,
        new.signing.sign(Purpose.KEY_ROTATION_NEW, json.dumps(payload).encode()),
    )
    try:
        verify_rotation(data, name="moscow", old_key=old.signing.public)
    except HotlineError:
        return
    assert payload == original


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=6000))
def test_key_event_parsers_never_crash(data):
    old, _new, _card = _FUZZ
    for check in (
        lambda: verify_rotation(data, name="moscow", old_key=old.signing.public),
        lambda: verify_revocation(data, name="moscow"),
        lambda: event_kind(data),
    ):
        with contextlib.suppress(HotlineError):
            check()


def _fuzz_parties():
    old = Identity.generate("moscow")
    new, new_card = _generation("moscow")
    return old, new, new_card


_FUZZ = _fuzz_parties()


_REVOCATION_FIELDS = (
    "v",
    "name",
    "revoked_key_id",
    "new_key_id",
    "card",
    "compromised_at",
    "time",
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    field=st.sampled_from(_REVOCATION_FIELDS),
    value=st.one_of(
        st.none(),
        st.integers(),
        st.text(max_size=40),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    ),
    drop=st.booleans(),
)
def test_revocation_payload_parser_refuses_any_change_with_a_typed_error(field, value, drop):
    """Any field of a revocation replaced or missing, re-signed by the genuine new key: refused
    with a HotlineError, or (an identical value) accepted."""
    old, new, new_card = _FUZZ
    payload = {
        "v": 1,
        "name": "moscow",
        "revoked_key_id": old.signing.public.key_id.hex(),
        "new_key_id": new.signing.public.key_id.hex(),
        "card": b64encode(new_card.statement),
        "compromised_at": format_time(NOW),
        "time": format_time(NOW),
    }
    original = dict(payload)
    if drop:
        del payload[field]
    else:
        payload[field] = value
    data = new.signing.sign(Purpose.KEY_REVOCATION, json.dumps(payload).encode())
    try:
        verify_revocation(data, name="moscow")
    except HotlineError:
        return
    assert payload == original


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
def test_key_event_file_parser_never_crashes(data):
    from hotline.core.keyevents import parse_event_file

    with contextlib.suppress(HotlineError):
        parse_event_file(data)


def test_key_event_file_round_trip(moscow):
    from hotline.core.keyevents import event_file, parse_event_file

    data = _rotation(moscow)
    assert parse_event_file(event_file(data)) == data
    with pytest.raises(WireError):
        parse_event_file(b'{"hotline_key_event": 2, "statement": ""}')
