"""Property tests of STIX bundle parsing and checking: marked bundles read back unchanged; any
bytes, and a valid bundle with any one member replaced, get an InputError and nothing else (the
OASIS validator included). A received referral's bundle goes through the same checks."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from referral_helpers import bundle_bytes, sample_bundle

from hotline.compose.catalog import Tlp
from hotline.errors import InputError
from hotline.referrals import stix

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=10,
)
VALIDATED = settings(max_examples=40, deadline=None)


@VALIDATED
@given(st.sampled_from(list(Tlp)), st.integers(0, 5))
def test_a_marked_bundle_reads_back_unchanged(tlp, n):
    marked = stix.stamp_tlp(stix.parse_bundle_bytes(bundle_bytes(sample_bundle(n))), tlp)
    again = stix.parse_bundle_bytes(bundle_bytes(marked))
    assert again == marked
    assert stix.check_bundle(again, tlp).bundle == marked
    assert stix.stamp_tlp(again, tlp) == marked  # stamping twice changes nothing


def _paths(value: Any, prefix: list[Any]) -> list[list[Any]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, [*prefix, k])
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, [*prefix, i])
    return out


def _replace(value: Any, path: list[Any], new: Any) -> Any:
    if not path:
        return new
    head, *rest = path
    if isinstance(value, dict):
        return {**value, head: _replace(value.get(head), rest, new)}
    copy = list(value)
    copy[head] = _replace(copy[head], rest, new)
    return copy


MARKED = stix.stamp_tlp(sample_bundle(1), Tlp.AMBER)


@st.composite
def damaged_bundles(draw: st.DrawFn) -> Any:
    path = draw(st.sampled_from(_paths(MARKED, [])))
    return _replace(MARKED, path, draw(JSON))


@VALIDATED
@given(damaged_bundles())
def test_a_damaged_bundle_passes_whole_or_gets_an_input_error(value):
    with contextlib.suppress(InputError):
        stix.check_bundle(stix.parse_bundle_bytes(json.dumps(value).encode()), Tlp.AMBER)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400) | JSON.map(lambda v: json.dumps(v).encode()))
def test_arbitrary_bytes_get_an_input_error(data):
    with contextlib.suppress(InputError):
        stix.check_shape(stix.parse_bundle_bytes(data))


def test_a_lone_surrogate_is_malformed_not_a_crash():
    data = b'{"type":"bundle","objects":[{"type":"x","id":"\\ud800"}]}'
    try:
        stix.parse_bundle_bytes(data)
    except InputError as e:
        assert e.code == "malformed"
    else:
        raise AssertionError("a lone surrogate was accepted")


def test_a_null_timestamp_is_stix_invalid_not_a_crash():
    # The OASIS validator raised TypeError on this (found by the property test above).
    bundle = stix.stamp_tlp(sample_bundle(0), Tlp.AMBER)
    bundle["objects"][1] = {**bundle["objects"][1], "created": None}
    try:
        stix.check_bundle(bundle, Tlp.AMBER)
    except InputError as e:
        assert e.code == "stix_invalid"
    else:
        raise AssertionError("a null timestamp was accepted")


def test_names_that_make_the_validator_backtrack_are_refused_first():
    """The OASIS validator's type and extension-name patterns backtrack exponentially: a
    98-character type took minutes (found by fuzz/fuzz_stix.py); refused before it runs (without
    the fix this test hangs until pytest-timeout ends it)."""
    slow = "a" * 60 + "!"
    for change in (
        {"type": slow},
        {"extensions": {slow: {}}},
        {"id": slow + "--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"},
    ):
        bundle = stix.stamp_tlp(sample_bundle(0), Tlp.AMBER)
        bundle["objects"][1] = {**bundle["objects"][1], **change}
        try:
            stix.check_bundle(bundle, Tlp.AMBER)
        except InputError as e:
            assert e.code == "stix_invalid"
        else:
            raise AssertionError(f"accepted {change}")
