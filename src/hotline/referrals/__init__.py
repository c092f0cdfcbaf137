"""Cyber referrals: STIX 2.1 incident referrals, cases tracked to closure, and TAXII 2.1.

The package is deliberately light to import: ``hotline.compose.catalog`` imports
``hotline.referrals.messages`` to register the ``case_update`` type, so this module imports
nothing. The public surface lives in the submodules:

    messages   CaseState, CaseUpdate (catalog type ``case_update``), validate_case_update
    stix       parse_bundle_bytes, check_bundle, stamp_tlp, TLP marking definitions, limits
    cases      open_referral, update_case, on_message_committed, catch_up, list/show
    report     accountability figures per peer and month
    taxii      the TAXII 2.1 server (FastAPI router) and its accounts

See docs/referrals.md.
"""

__all__: list[str] = []
