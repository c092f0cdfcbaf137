"""Fuzz target: STIX 2.1 bundles of cyber referrals (parse_bundle_bytes, check_bundle,
stamp_tlp), as given to ``hotline case open`` or received in a peer's referral.

Seeds: a TLP:AMBER bundle of an indicator, an identity and a relationship. Contract: only typed
errors, including from the OASIS validator (step 4); a bundle that passes is still marked with
its TLP after stamping it again.

    .venv/bin/python fuzz/fuzz_stix.py -runs=1000000
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["hotline"]):
    from _common import run

    from hotline.compose.catalog import Tlp
    from hotline.core.encoding import encode_json
    from hotline.errors import HotlineError
    from hotline.referrals.stix import check_bundle, parse_bundle_bytes, stamp_tlp

CREATED = "2026-11-26T03:12:00.000Z"
INDICATOR = {
    "type": "indicator",
    "spec_version": "2.1",
    "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
    "created": CREATED,
    "modified": CREATED,
    "name": "C2 address",
    "pattern": "[ipv4-addr:value = '198.51.100.7']",
    "pattern_type": "stix",
    "valid_from": CREATED,
}
IDENTITY = {
    "type": "identity",
    "spec_version": "2.1",
    "id": "identity--023d105b-752e-4e3c-941c-7d3f3cb15e9e",
    "created": CREATED,
    "modified": CREATED,
    "name": "CERT Washington",
    "identity_class": "organization",
}
RELATIONSHIP = {
    "type": "relationship",
    "spec_version": "2.1",
    "id": "relationship--44298a74-ba52-4f0c-87a3-1824e67d7fad",
    "created": CREATED,
    "modified": CREATED,
    "relationship_type": "related-to",
    "source_ref": INDICATOR["id"],
    "target_ref": IDENTITY["id"],
}
BUNDLE = stamp_tlp(
    {
        "type": "bundle",
        "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d",
        "objects": [INDICATOR, IDENTITY, RELATIONSHIP],
    },
    Tlp.AMBER,
)
check_bundle(BUNDLE, Tlp.AMBER)  # the seed itself must pass
SEEDS = [encode_json(BUNDLE)]


def test_one_input(data: bytes) -> None:
    try:
        bundle = check_bundle(parse_bundle_bytes(data), Tlp.AMBER).bundle
    except HotlineError:
        return
    check_bundle(stamp_tlp(bundle, Tlp.AMBER), Tlp.AMBER)


if __name__ == "__main__":
    run("stix", test_one_input, SEEDS)
    sys.exit(0)
