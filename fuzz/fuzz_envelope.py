"""Fuzz target: opening envelopes (read_header, open_envelope) on mutated sealed envelopes.

Seeds: a message, a DELIVERED receipt, an ACKNOWLEDGED receipt and a heartbeat, sealed by
washington to moscow. Contract: only typed errors; an envelope that opens is byte for byte one
of the seeds (any other accepted envelope is a forgery).

    .venv/bin/python fuzz/fuzz_envelope.py -runs=1000000
"""

from __future__ import annotations

import contextlib
import sys
from datetime import timedelta

import atheris

with atheris.instrument_imports(include=["hotline"]):
    from _common import NOW, Forgery, identity, run

    from hotline.core.envelope import (
        Kind,
        ReceiptItem,
        ReceiptKind,
        new_id,
        open_envelope,
        read_header,
        seal,
        sha256_hex,
        sign_heartbeat,
        sign_message,
        sign_receipt,
    )
    from hotline.core.keys import SigningPublicKey
    from hotline.errors import HotlineError

WASHINGTON = identity("washington")
MOSCOW = identity("moscow")


def _seal(kind: Kind, envelope_id: str, statement: bytes) -> bytes:
    return seal(
        kind=kind,
        sender="washington",
        recipient="moscow",
        envelope_id=envelope_id,
        statement=statement,
        recipient_key=MOSCOW.decryption.public,
    )


def seeds() -> list[bytes]:
    mid, rid, aid, hid = (new_id(NOW + timedelta(seconds=i)) for i in range(4))
    message = sign_message(
        WASHINGTON,
        to="moscow",
        message_id=mid,
        seq=1,
        created=NOW,
        msg_type="free_text",
        priority="flash",
        body={"text": "confirm receipt", "lang": "en"},
        expires=NOW + timedelta(hours=1),
        author="duty-officer",
    )
    item = ReceiptItem(id=mid, seq=1, envelope_hash="0" * 64, signed_hash="1" * 64, leaf_index=0)
    delivered = sign_receipt(
        WASHINGTON,
        to="moscow",
        receipt_id=rid,
        created=NOW,
        kind=ReceiptKind.DELIVERED,
        items=[item],
        tree_size=1,
        tree_root=bytes(32),
    )
    acknowledged = sign_receipt(
        WASHINGTON,
        to="moscow",
        receipt_id=aid,
        created=NOW,
        kind=ReceiptKind.ACKNOWLEDGED,
        items=[item],
        seq=2,
        operator="duty-officer",
        lang="ru",
        tz="Europe/Moscow",
        text_hash="2" * 64,
    )
    heartbeat = sign_heartbeat(
        WASHINGTON,
        to="moscow",
        heartbeat_id=hid,
        created=NOW,
        nonce="00" * 16,
        echo=None,
        last_seq=2,
        next_expected=1,
        expired=[],
    )
    return [
        _seal(Kind.MESSAGE, mid, message),
        _seal(Kind.RECEIPT, rid, delivered),
        _seal(Kind.RECEIPT, aid, acknowledged),
        _seal(Kind.HEARTBEAT, hid, heartbeat),
    ]


SEEDS = seeds()
KNOWN = frozenset(sha256_hex(s) for s in SEEDS)


def _key(name: str) -> SigningPublicKey | None:
    return WASHINGTON.signing.public if name == "washington" else None


def test_one_input(data: bytes) -> None:
    with contextlib.suppress(HotlineError):
        read_header(data)
    try:
        open_envelope(MOSCOW, data, _key)
    except HotlineError:
        return
    if sha256_hex(data) not in KNOWN:
        raise Forgery(f"an envelope other than the seeds opened: {data[:64]!r}")


if __name__ == "__main__":
    run("envelope", test_one_input, SEEDS)
    sys.exit(0)
