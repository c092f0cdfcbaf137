"""Two linked node directories (washington and moscow) with stores, no processes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hotline.node.home import NodeHome


def link_homes(
    base: Path, names: tuple[str, ...] = ("washington", "moscow")
) -> dict[str, NodeHome]:
    """Node directories under ``base``, each holding every other's verified card."""
    now = datetime.now(UTC)
    homes = {
        name: NodeHome.init(
            base / name, name=name, listen=f"127.0.0.1:{18500 + i}", display_names={"en": name}
        )
        for i, name in enumerate(names)
    }
    for name, home in homes.items():
        for other_name, other in homes.items():
            if other_name != name:
                card = other.card(now)
                home.add_peer(card, card.fingerprint, now)
    return homes


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[dict[str, NodeHome]]:
    homes = link_homes(tmp_path)
    yield homes
    for home in homes.values():
        home.close()
