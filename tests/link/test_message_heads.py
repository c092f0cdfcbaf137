"""Which messages carry the sender's signed tree head (docs/protocol.md §4.1): the first one to
each peer created after the head was signed; the others leave it out, since the peer has it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from hotline.core.encoding import b64decode
from hotline.core.envelope import Kind, MessagePayload, parse_payload
from hotline.core.keys import Purpose, verify_statement
from hotline.core.treehead import verify_tree_head
from hotline.link import inbox, outbox
from hotline.node.home import NodeHome
from hotline.store.messages import pending_outgoing
from hotline.store.schema import messages

TTL = timedelta(hours=1)


def _draft(home: NodeHome, to: str, text: str) -> outbox.Draft:
    return outbox.Draft(
        home.peer_card(to), "free_text", "routine", {"text": text, "lang": "en"}, TTL
    )


def _send(home: NodeHome, drafts: list[outbox.Draft], now: datetime) -> list[str]:
    return outbox.submit_messages(home.store, home.identity, drafts, now=now)


def _head_carried(home: NodeHome, message_id: str) -> int | None:
    """The size of the tree head the message carries (checked as the peer checks it)."""
    with home.store.read() as conn:
        signed = conn.execute(select(messages.c.signed).where(messages.c.id == message_id)).scalar()
    key = home.identity.signing.public
    payload = parse_payload(
        Kind.MESSAGE, verify_statement(bytes(signed), Purpose.MESSAGE, key).payload
    )
    assert isinstance(payload, MessagePayload)
    if payload.tree_head is None:
        return None
    return verify_tree_head(
        b64decode(payload.tree_head, what="tree_head"), key, log=home.identity.name
    ).size


def test_only_the_first_message_after_a_head_carries_it(pair):
    w = pair["washington"]
    now = datetime.now(UTC)
    first = _send(w, [_draft(w, "moscow", "one")], now)[0]
    second = _send(w, [_draft(w, "moscow", "two")], now + timedelta(milliseconds=1))[0]
    assert _head_carried(w, first) == 0  # the head signed before the first message was logged
    # The same head (younger than a second): moscow has it from the first message.
    assert _head_carried(w, second) is None
    # Two seconds later the log has grown: a new head is signed, and the next message has it.
    third = _send(w, [_draft(w, "moscow", "three")], now + timedelta(seconds=2))[0]
    assert _head_carried(w, third) == 2


def test_a_batch_carries_the_head_once_per_peer(trio):
    w = trio["washington"]
    peers = ("moscow", "moscow", "beijing", "moscow", "beijing")
    ids = _send(w, [_draft(w, to, f"m{i}") for i, to in enumerate(peers)], datetime.now(UTC))
    assert [_head_carried(w, i) for i in ids] == [0, None, 0, None, None]


def test_after_an_acknowledgement_the_next_message_carries_the_head(pair):
    """An ACKNOWLEDGED receipt takes the next number towards the peer but carries no head: the
    sender cannot tell from it which head the peer has, so the next message carries one."""
    w, m = pair["washington"], pair["moscow"]
    now = datetime.now(UTC)
    from_moscow = _send(m, [_draft(m, "washington", "hello")], now)[0]
    with m.store.read() as conn:
        envelopes = [p.envelope for p in pending_outgoing(conn, "washington", 10)]
    inbox.receive(w.store, w.identity, w.peer_cards(), envelopes, now=now, source="test")
    before = _send(w, [_draft(w, "moscow", "before")], now)[0]
    assert _head_carried(w, before) is not None
    later = now + timedelta(milliseconds=1)
    card = w.peer_card("moscow")
    outbox.acknowledge(w.store, w.identity, card, from_moscow, now=later, ttl=TTL, operator="duty")
    after = _send(w, [_draft(w, "moscow", "after")], later + timedelta(milliseconds=1))[0]
    assert _head_carried(w, after) == _head_carried(w, before)
