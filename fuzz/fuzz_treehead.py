"""Fuzz target: signed tree heads and witness cosignatures (verify_tree_head, verify_cosignature).

Seeds: washington's heads at sizes 0, 1 and 2^40, and helsinki's cosignature of one. Contract:
only typed errors; a head or cosignature that verifies is byte for byte one of the seeds.

    .venv/bin/python fuzz/fuzz_treehead.py -runs=1000000
"""

from __future__ import annotations

import hashlib
import sys

import atheris

with atheris.instrument_imports(include=["hotline"]):
    from _common import NOW, Forgery, identity, run

    from hotline.core.treehead import sign_tree_head, verify_tree_head
    from hotline.core.witness import cosign, verify_cosignature
    from hotline.errors import HotlineError

WASHINGTON = identity("washington")
HELSINKI = identity("helsinki")
HEADS = [
    sign_tree_head(WASHINGTON, size=n, root=hashlib.sha256(str(n).encode()).digest(), time=NOW)
    for n in (0, 1, 2**40)
]
COSIGNATURE = cosign(HELSINKI, log="washington", size=1, root=HEADS[1].root, time=NOW)
SEEDS = [h.statement for h in HEADS] + [COSIGNATURE.statement]
KNOWN = frozenset(SEEDS)


def test_one_input(data: bytes) -> None:
    accepted = False
    try:
        verify_tree_head(data, WASHINGTON.signing.public, log="washington")
        accepted = True
    except HotlineError:
        pass
    try:
        verify_cosignature(data, HELSINKI.signing.public, witness="helsinki", log="washington")
        accepted = True
    except HotlineError:
        pass
    if accepted and data not in KNOWN:
        raise Forgery("a tree head or cosignature other than the seeds verified")


if __name__ == "__main__":
    run("treehead", test_one_input, SEEDS)
    sys.exit(0)
