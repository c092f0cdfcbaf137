"""Fuzz target: the signed payloads of messages, receipts and heartbeats (parse_payload).

A peer signs any payload it likes, so after the signatures check out this parser still faces
hostile bytes (threat P15). The first byte picks the kind; the rest is the payload JSON. Seeds:
valid payloads of each kind. Contract: only typed errors; an accepted payload encodes back to
an equal value.

    .venv/bin/python fuzz/fuzz_payload.py -runs=1000000
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["hotline"]):
    import msgspec
    from _common import run

    from hotline.core.encoding import encode_json
    from hotline.core.envelope import Kind, parse_payload
    from hotline.errors import HotlineError

KINDS = list(Kind)
ID = "019ac2e4-8f00-7000-8000-000000000001"
HASH = "ab" * 32
PAYLOADS = {
    Kind.MESSAGE: {
        "v": 1,
        "id": ID,
        "from": "washington",
        "to": "moscow",
        "seq": 1,
        "created": "2026-11-26T03:12:00.000000Z",
        "type": "free_text",
        "priority": "flash",
        "body": {"text": "confirm", "lang": "en"},
        "expires": "2026-11-27T03:12:00.000000Z",
        "in_reply_to": ID,
        "author": "duty-officer",
        "released_by": "releaser",
        "notification": ID,
    },
    Kind.RECEIPT: {
        "v": 1,
        "id": ID,
        "from": "moscow",
        "to": "washington",
        "created": "2026-11-26T03:12:00.000000Z",
        "kind": "delivered",
        "items": [
            {"id": ID, "seq": 1, "envelope_hash": HASH, "signed_hash": HASH, "leaf_index": 0}
        ],
        "tree_size": 1,
        "tree_root": HASH,
    },
    Kind.HEARTBEAT: {
        "v": 1,
        "id": ID,
        "from": "washington",
        "to": "moscow",
        "created": "2026-11-26T03:12:00.000000Z",
        "nonce": "00" * 16,
        "echo": "11" * 16,
        "last_seq": 4,
        "next_expected": 2,
        "expired": [1, 3],
    },
}
SEEDS = [bytes([KINDS.index(k)]) + encode_json(p) for k, p in PAYLOADS.items()]


def test_one_input(data: bytes) -> None:
    if not data:
        return
    kind = KINDS[data[0] % len(KINDS)]
    try:
        payload = parse_payload(kind, data[1:])
    except HotlineError:
        return
    again = parse_payload(kind, msgspec.json.encode(payload))
    if again != payload:
        raise AssertionError("an accepted payload does not survive encoding")


if __name__ == "__main__":
    run("payload", test_one_input, SEEDS)
    sys.exit(0)
