"""Fuzz target: proof replies from a peer's log (decode_proof_reply), checked against our heads.

The first byte picks a case (a consistency proof 3 -> 7, 1 -> 8 or 6 -> 6, an inclusion proof
of leaf 5 of 11); the rest is the JSON reply as a peer sends it. Contract: only typed errors; a
proof that verifies is exactly the honest one (RFC 9162 proofs are unique for given sizes).

    .venv/bin/python fuzz/fuzz_proof.py -runs=1000000
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["hotline"]):
    from _common import Forgery, run

    from hotline.core import merkle
    from hotline.core.encoding import b64encode, encode_json
    from hotline.errors import HotlineError
    from hotline.node.runtime import decode_proof_reply

LEAVES = [merkle.leaf_hash(f"entry {i}".encode()) for i in range(11)]


def root(n: int) -> bytes:
    return merkle.root_from_leaf_hashes(LEAVES[:n])


CONSISTENCY = [(3, 7), (1, 8), (6, 6)]
INCLUSION = (5, 11)
HONEST: list[list[bytes]] = [
    merkle.consistency_proof(LEAVES[:new], old) for old, new in CONSISTENCY
] + [merkle.inclusion_proof(LEAVES[: INCLUSION[1]], INCLUSION[0])]


def reply(first: int, second: int, proof: list[bytes]) -> bytes:
    return encode_json({"first": first, "second": second, "proof": [b64encode(h) for h in proof]})


SEEDS = [
    bytes([i]) + reply(*(CONSISTENCY[i] if i < len(CONSISTENCY) else INCLUSION), HONEST[i])
    for i in range(len(HONEST))
]


def test_one_input(data: bytes) -> None:
    if not data:
        return
    case = data[0] % len(HONEST)
    try:
        proof = decode_proof_reply(data[1:])
        if case < len(CONSISTENCY):
            old, new = CONSISTENCY[case]
            merkle.verify_consistency(
                old_size=old, new_size=new, old_root=root(old), new_root=root(new), proof=proof
            )
        else:
            index, size = INCLUSION
            merkle.verify_inclusion(
                leaf_hash=LEAVES[index], index=index, size=size, proof=proof, root=root(size)
            )
    except HotlineError:
        return
    if proof != HONEST[case]:
        raise Forgery(f"a proof other than the honest one verified (case {case})")


if __name__ == "__main__":
    run("proof", test_one_input, SEEDS)
    sys.exit(0)
