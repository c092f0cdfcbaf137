"""Fuzz target: contact cards (parse_card_file, parse_card_statement), as fetched from a peer.

Seeds: card files and bare card statements of a node and of a witness. Contract: only typed
errors; a card that verifies carries one of the seeds' signed statements, byte for byte.

    .venv/bin/python fuzz/fuzz_card.py -runs=1000000
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["hotline"]):
    from _common import NOW, Forgery, identity, run

    from hotline.core.card import make_card, parse_card_file, parse_card_statement
    from hotline.errors import HotlineError

CARDS = [
    make_card(
        identity("washington"),
        display_names={"en": "Washington", "ru": "Вашингтон"},
        endpoints=["https://hotline.example.gov:8400", "http://10.0.0.1:8400"],
        created=NOW,
    ),
    make_card(
        identity("helsinki"),
        display_names={"en": "Helsinki"},
        endpoints=[],
        created=NOW,
        role="witness",
    ),
]
SEEDS = [c.to_file_bytes() for c in CARDS] + [c.statement for c in CARDS]
KNOWN = frozenset(c.statement for c in CARDS)


def test_one_input(data: bytes) -> None:
    for parse in (parse_card_file, parse_card_statement):
        try:
            card = parse(data)
        except HotlineError:
            continue
        if card.statement not in KNOWN:
            raise Forgery(f"a card other than the seeds verified: {card.name!r}")


if __name__ == "__main__":
    run("card", test_one_input, SEEDS)
    sys.exit(0)
