"""Fuzz target: splitting a batch of envelopes (decode_batch), the first parser a request meets.

Contract: only typed errors; what splits re-encodes to the same bytes (one encoding per batch).

    .venv/bin/python fuzz/fuzz_batch.py -runs=1000000
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["hotline"]):
    from _common import run

    from hotline.core.envelope import decode_batch, encode_batch
    from hotline.errors import HotlineError

SEEDS = [
    encode_batch([]),
    encode_batch([b"HLE1\x00\x02{}"]),
    encode_batch([b"a" * 40, b"", b"HLE1" + bytes(100)]),
]


def test_one_input(data: bytes) -> None:
    try:
        envelopes = decode_batch(data)
    except HotlineError:
        return
    if encode_batch(envelopes) != data:
        raise AssertionError("a batch that splits does not re-encode to its own bytes")


if __name__ == "__main__":
    run("batch", test_one_input, SEEDS)
    sys.exit(0)
