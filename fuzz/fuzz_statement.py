"""Fuzz target: signed statements (verify_statement, peek_statement) for every purpose.

Seeds: one statement per purpose signed by washington. Contract: only typed errors; a statement
that verifies, for any purpose, is byte for byte one of the seeds.

    .venv/bin/python fuzz/fuzz_statement.py -runs=1000000
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["hotline"]):
    from _common import Forgery, identity, run

    from hotline.core.encoding import encode_json
    from hotline.core.keys import Purpose, peek_statement, verify_statement
    from hotline.errors import HotlineError

WASHINGTON = identity("washington")
SIGNER = WASHINGTON.signing.public
SEEDS = [
    WASHINGTON.signing.sign(p, encode_json({"purpose": p.value, "n": i}))
    for i, p in enumerate(Purpose)
]
KNOWN = frozenset(SEEDS)


def test_one_input(data: bytes) -> None:
    try:
        peek_statement(data)
    except HotlineError:
        return  # verify_statement parses the same way first
    for purpose in Purpose:
        try:
            verify_statement(data, purpose, SIGNER)
        except HotlineError:
            continue
        if data not in KNOWN:
            raise Forgery(f"a statement other than the seeds verified for {purpose}")


if __name__ == "__main__":
    run("statement", test_one_input, SEEDS)
    sys.exit(0)
