"""The relay's checks of deposit and pull requests, on a real relay store (no processes): only a
registered node may deposit or pull, only its own envelopes, only once, only recently, only at
the relay it named; a mailbox is bounded."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hotline.core.card import Identity
from hotline.core.envelope import Kind, new_id, seal, sign_message
from hotline.core.keys import Purpose
from hotline.core.relay import sign_deposit, sign_pull
from hotline.errors import ErrorCode, HotlineError
from hotline.link.mailbox import Mailbox, MailboxLimits
from hotline.node.home import NodeHome

NOW = datetime.now(UTC)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, NodeHome]]:
    homes = {
        name: NodeHome.init(
            tmp_path / name,
            name=name,
            listen="127.0.0.1:1",
            display_names={},
            role="relay" if name == "geneva" else "node",
        )
        for name in ("washington", "moscow", "geneva")
    }
    relay = homes["geneva"]
    for name in ("washington", "moscow"):
        card = homes[name].card(NOW)
        relay.add_peer(card, card.fingerprint, NOW)
        relay_card = relay.card(NOW)
        homes[name].add_peer(relay_card, relay_card.fingerprint, NOW)
    peer = homes["moscow"].card(NOW)
    homes["washington"].add_peer(peer, peer.fingerprint, NOW)
    yield homes
    for home in homes.values():
        home.close()


def _mailbox(world: dict[str, NodeHome], **limits: float) -> Mailbox:
    relay = world["geneva"]
    return Mailbox(
        name="geneva",
        store=relay.store,
        peers=relay.peer_cards(),
        limits=MailboxLimits(
            hold_s=limits.get("hold_s", 3600.0),
            max_envelopes=int(limits.get("max_envelopes", 100)),
            max_bytes=int(limits.get("max_bytes", 10**8)),
        ),
    )


def _envelope(world: dict[str, NodeHome], sender: str = "washington", to: str = "moscow") -> bytes:
    message_id = new_id(NOW)
    statement = sign_message(
        world[sender].identity,
        to=to,
        message_id=message_id,
        seq=1,
        created=NOW,
        msg_type="free_text",
        priority="routine",
        body={"text": "x", "lang": "en"},
    )
    return seal(
        kind=Kind.MESSAGE,
        sender=sender,
        recipient=to,
        envelope_id=message_id,
        statement=statement,
        recipient_key=world[to].identity.decryption.public,
    )


def _deposit(identity: Identity, envelopes: list[bytes], *, relay: str = "geneva", at=NOW):
    return sign_deposit(
        identity, relay=relay, request_id=new_id(at), created=at, envelopes=envelopes
    )


def _code(call) -> ErrorCode:
    with pytest.raises(HotlineError) as caught:
        call()
    return caught.value.code


def test_a_deposit_is_kept_once_and_handed_to_the_recipient_only(world):
    box = _mailbox(world)
    envelope = _envelope(world)
    w = world["washington"].identity
    assert box.deposit(_deposit(w, [envelope]), [envelope], source="t", now=NOW).accepted == 1
    again = box.deposit(_deposit(w, [envelope]), [envelope], source="t", now=NOW)
    assert (again.accepted, again.duplicates) == (0, 1)

    def pull(who: str, after: int) -> tuple[list[bytes], int]:
        statement = sign_pull(
            world[who].identity,
            relay="geneva",
            request_id=new_id(NOW),
            created=NOW,
            after=after,
            wait=0,
        )
        return asyncio.run(box.pull(statement, source="t", now=NOW))

    assert pull("washington", 0) == ([], 0)  # not washington's mail
    mail, cursor = pull("moscow", 0)
    assert mail == [envelope]
    assert pull("moscow", cursor) == ([], cursor)  # confirmed: forgotten
    assert box.held() == {}


def test_forged_replayed_stale_and_misdirected_requests_are_refused(world):
    box = _mailbox(world)
    envelope = _envelope(world)
    w = world["washington"].identity
    stranger = Identity.generate("washington")  # same name, other keys
    assert (
        _code(lambda: box.deposit(_deposit(stranger, [envelope]), [envelope], source="t", now=NOW))
        == ErrorCode.UNKNOWN_KEY
    )
    request = _deposit(w, [envelope])
    box.deposit(request, [envelope], source="t", now=NOW)
    assert (
        _code(lambda: box.deposit(request, [envelope], source="t", now=NOW))
        == ErrorCode.REPLAY_CONFLICT
    )
    old = NOW - timedelta(minutes=10)
    assert (
        _code(lambda: box.deposit(_deposit(w, [envelope], at=old), [envelope], source="t", now=NOW))
        == ErrorCode.REPLAY_CONFLICT
    )
    assert (
        _code(
            lambda: box.deposit(
                _deposit(w, [envelope], relay="vienna"), [envelope], source="t", now=NOW
            )
        )
        == ErrorCode.WRONG_RECIPIENT
    )
    other = _envelope(world)
    assert (  # the request signed other envelopes than those sent
        _code(lambda: box.deposit(_deposit(w, [envelope]), [other], source="t", now=NOW))
        == ErrorCode.HEADER_MISMATCH
    )
    theirs = _envelope(world, sender="moscow", to="washington")
    assert (  # washington cannot hand over moscow's envelopes
        _code(lambda: box.deposit(_deposit(w, [theirs]), [theirs], source="t", now=NOW))
        == ErrorCode.HEADER_MISMATCH
    )
    pull = sign_pull(w, relay="geneva", request_id=new_id(NOW), created=NOW, after=0, wait=0)
    asyncio.run(box.pull(pull, source="t", now=NOW))
    assert (
        _code(lambda: asyncio.run(box.pull(pull, source="t", now=NOW))) == ErrorCode.REPLAY_CONFLICT
    )
    assert (  # a pull statement is not a deposit (labels are separate)
        _code(lambda: box.deposit(pull, [], source="t", now=NOW)) == ErrorCode.WRONG_PURPOSE
    )
    not_utf8 = w.signing.sign(Purpose.RELAY_DEPOSIT, b'{"from":"washingt\x82n"}')
    assert (  # the sender is read before any key is chosen: bad UTF-8 is malformed, not a crash
        _code(lambda: box.deposit(not_utf8, [], source="t", now=NOW)) == ErrorCode.MALFORMED
    )


def test_a_full_mailbox_refuses_more(world):
    box = _mailbox(world, max_envelopes=2)
    w = world["washington"].identity
    for _ in range(2):
        envelope = _envelope(world)
        box.deposit(_deposit(w, [envelope]), [envelope], source="t", now=NOW)
    envelope = _envelope(world)
    assert (
        _code(lambda: box.deposit(_deposit(w, [envelope]), [envelope], source="t", now=NOW))
        == ErrorCode.MAILBOX_FULL
    )
    assert box.held() == {"moscow": 2}
    assert box.prune(NOW + timedelta(hours=2)) == 2  # past the hold time: dropped
