"""Two linked node directories (washington and moscow) with stores, no processes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hotline.core.envelope import Kind, new_id, seal, sign_heartbeat, sign_message
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


@pytest.fixture
def trio(tmp_path: Path) -> Iterator[dict[str, NodeHome]]:
    homes = link_homes(tmp_path, ("washington", "moscow", "beijing"))
    yield homes
    for home in homes.values():
        home.close()


def forge_message(
    sender: NodeHome,
    recipient: NodeHome,
    *,
    seq: int,
    text: str = "x",
    message_id: str | None = None,
    priority: str = "routine",
    created: datetime | None = None,
    header_sender: str | None = None,
) -> bytes:
    """A free-text envelope signed and sealed by hand, as a buggy or hostile sender could make:
    any sequence number, any id, any claimed creation time, and a routing header naming
    ``header_sender`` instead of the signer (tests of the receiver's replay, sequence, time and
    forgery rules)."""
    now = datetime.now(UTC)
    message_id = message_id or new_id(now)
    statement = sign_message(
        sender.identity,
        to=recipient.config.name,
        message_id=message_id,
        seq=seq,
        created=created or now,
        msg_type="free_text",
        priority=priority,
        body={"text": text, "lang": "en"},
    )
    return seal(
        kind=Kind.MESSAGE,
        sender=header_sender or sender.config.name,
        recipient=recipient.config.name,
        envelope_id=message_id,
        statement=statement,
        recipient_key=recipient.identity.decryption.public,
    )


def forge_heartbeat(
    sender: NodeHome,
    recipient: NodeHome,
    *,
    created: datetime | None = None,
    header_sender: str | None = None,
    last_seq: int = 0,
    expired: tuple[int, ...] = (),
) -> bytes:
    """A heartbeat signed and sealed by hand: any claimed time, any name in the header, any
    sequence numbers declared expired."""
    created = created or datetime.now(UTC)
    heartbeat_id = new_id(created)
    statement = sign_heartbeat(
        sender.identity,
        to=recipient.config.name,
        heartbeat_id=heartbeat_id,
        created=created,
        nonce="n",
        echo=None,
        last_seq=last_seq,
        next_expected=1,
        expired=list(expired),
    )
    return seal(
        kind=Kind.HEARTBEAT,
        sender=header_sender or sender.config.name,
        recipient=recipient.config.name,
        envelope_id=heartbeat_id,
        statement=statement,
        recipient_key=recipient.identity.decryption.public,
    )


@pytest.fixture
def forge():
    return forge_message


@pytest.fixture
def forge_beat():
    return forge_heartbeat
