"""Two linked node homes (washington, moscow) in one process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from referral_helpers import NOW

from hotline.node.home import NodeHome


@pytest.fixture
def homes(tmp_path: Path) -> Iterator[dict[str, NodeHome]]:
    made: dict[str, NodeHome] = {}
    for i, name in enumerate(["washington", "moscow"]):
        made[name] = NodeHome.init(
            tmp_path / name,
            name=name,
            listen=f"127.0.0.1:{18500 + i}",
            display_names={"en": name.capitalize()},
        )
    for name, home in made.items():
        for other_name, other in made.items():
            if other_name != name:
                card = other.card(NOW)
                home.add_peer(card, card.fingerprint, NOW)
    yield made
    for home in made.values():
        home.close()
