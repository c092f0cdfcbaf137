"""Fuzz target: key events (verify_rotation, verify_revocation, event_kind; protocol §15).

Seeds: moscow's rotation from one fixed key to another, and its revocation of the second key.
Contract: only typed errors; a rotation or revocation that verifies is byte for byte one of the
seeds (a rotation needs both keys' signatures, a revocation the new key's).

    .venv/bin/python fuzz/fuzz_keyevents.py -runs=1000000
"""

from __future__ import annotations

import contextlib
import sys
from datetime import timedelta

import atheris

with atheris.instrument_imports(include=["hotline"]):
    from _common import NOW, Forgery, identity, run

    from hotline.core.card import Identity, make_card
    from hotline.core.keyevents import (
        event_kind,
        make_revocation,
        make_rotation,
        verify_revocation,
        verify_rotation,
    )
    from hotline.errors import HotlineError

OLD = identity("moscow")
# Later generations of moscow's keys: fixed seeds of their own, moscow's name.
NEW = Identity("moscow", identity("moscow-next").signing, identity("moscow-next").decryption)
THIRD = Identity("moscow", identity("moscow-third").signing, identity("moscow-third").decryption)
NEW_CARD = make_card(NEW, display_names={}, endpoints=["http://127.0.0.1:8402"], created=NOW)
THIRD_CARD = make_card(THIRD, display_names={}, endpoints=[], created=NOW)
ROTATION = make_rotation(OLD, NEW, NEW_CARD, effective=NOW, overlap_end=NOW + timedelta(days=7))
REVOCATION = make_revocation(
    THIRD,
    THIRD_CARD,
    revoked_key_id=NEW.signing.public.key_id,
    compromised_at=NOW,
    time=NOW + timedelta(hours=1),
)
SEEDS = [ROTATION, REVOCATION]
KNOWN = frozenset(SEEDS)


def test_one_input(data: bytes) -> None:
    accepted = False
    with contextlib.suppress(HotlineError):
        event_kind(data)
    try:
        verify_rotation(data, name="moscow", old_key=OLD.signing.public)
        accepted = True
    except HotlineError:
        pass
    try:
        verify_revocation(data, name="moscow")
        accepted = True
    except HotlineError:
        pass
    if accepted and data not in KNOWN:
        raise Forgery("a key event other than the seeds verified")


if __name__ == "__main__":
    run("keyevents", test_one_input, SEEDS)
    sys.exit(0)
