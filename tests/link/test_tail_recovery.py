"""Recovering a lost tail (hotline.link.recovery) between two real stores, in one process: the
answering node's side (what it sends, its bounds, its refusals) and the restored node's rounds
(paging, what it keeps, a refused answer keeps nothing). The two-process test with a real
restore is tests/integration/test_backup.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from hotline.core import merkle
from hotline.core.card import Identity
from hotline.core.encoding import parse_time, to_us
from hotline.core.envelope import new_id
from hotline.core.recovery import Asked, Direction, sign_request, verify_answer
from hotline.errors import ErrorCode, HotlineError, StorageError, VerificationError
from hotline.link import inbox, outbox, recovery
from hotline.node.home import NodeHome
from hotline.store.messages import pending_outgoing
from hotline.store.schema import messages, security_events
from hotline.transcript import hold
from hotline.transcript.recovered import list_recovered, recovered_statements

TTL = timedelta(hours=1)


def _send(home: NodeHome, to: str, text: str) -> str:
    return outbox.submit_message(
        home.store,
        home.identity,
        home.peer_card(to),
        msg_type="free_text",
        priority="routine",
        body={"text": text, "lang": "en"},
        now=datetime.now(UTC),
        ttl=TTL,
    )


def _deliver(sender: NodeHome, receiver: NodeHome) -> None:
    with sender.store.read() as conn:
        envelopes = [p.envelope for p in pending_outgoing(conn, receiver.config.name, 1000)]
    now = datetime.now(UTC)
    result = inbox.receive(
        receiver.store, receiver.identity, receiver.peer_cards(), envelopes, now=now, source="t"
    )
    receipts = result.receipts.get(sender.config.name, [])
    inbox.receive(sender.store, sender.identity, sender.peer_cards(), receipts, now=now, source="t")


class _Loopback:
    """washington's link to moscow, answered by moscow's store in this process."""

    def __init__(self, w: NodeHome, m: NodeHome, damage: Callable[[bytes], bytes] | None = None):
        self.peer = w.peer_card("moscow")
        self.m = m
        self.damage = damage
        self.asked = 0

    async def post(self, path: str, body: bytes, content_type: str) -> bytes:
        assert (path, content_type) == (recovery.RECOVER_PATH, recovery.STATEMENT_CONTENT_TYPE)
        self.asked += 1
        data = recovery.answer(
            self.m.identity, self.m.store, self.m.peer_cards(), body, datetime.now(UTC)
        )
        return data if self.damage is None else self.damage(data)


def _round(w: NodeHome, link: _Loopback) -> recovery.Round:
    return asyncio.run(
        recovery.recover_round(link, w.identity, w.store, lambda: datetime.now(UTC))  # type: ignore[arg-type]
    )


def _request(w: Identity, *, to: str = "moscow", mine_after: int = 0, created=None) -> bytes:
    now = created or datetime.now(UTC)
    return sign_request(
        w,
        responder=to,
        request_id=new_id(now),
        created=now,
        yours_after=0,
        mine_after=mine_after,
        known_size=0,
    )


def test_a_long_tail_comes_back_over_several_answers(pair, monkeypatch):
    """moscow's five messages to washington (which washington's store does not hold) come back
    in answers of at most two (a small budget), each kept once, verified, with moscow's head."""
    w, m = pair["washington"], pair["moscow"]
    sent = [_send(m, "washington", f"m{i}") for i in range(5)]
    with m.store.read() as conn:
        sizes = conn.execute(select(func.length(messages.c.signed))).scalars().all()
    # Only the first message carries moscow's tree head: an answer holds it alone, or two others.
    large, small = (recovery.AnswerItem.cost(int(f(sizes)), 3) for f in (max, min))  # proofs of 3
    monkeypatch.setattr(recovery, "ANSWER_ITEMS_BUDGET", max(large, 2 * small) + small // 2)
    link = _Loopback(w, m)
    done = _round(w, link)
    assert (done.stored_in, done.stored_out, done.complete) == ([1, 2, 3, 4, 5], [], True)
    assert link.asked == done.pages == 3
    with w.store.read() as conn:
        rows = list_recovered(conn, "moscow", compromised={})
    assert [(r.direction, r.seq, r.ref) for r in rows] == [("in", i + 1, sent[i]) for i in range(5)]
    assert [r.to_dict()["body"]["text"] for r in rows] == [f"m{i}" for i in range(5)]
    assert not any(r.to_dict()["key_suspect"] for r in rows)
    # Had moscow revoked the key as compromised as of the third message's creation, that one
    # and the later ones would be flagged (threat K1), the earlier ones not.
    third = to_us(parse_time(rows[2].created, what="created"))
    with w.store.read() as conn:
        flagged = list_recovered(conn, "moscow", compromised={rows[0].key_id: third})
    assert [r.to_dict()["key_suspect"] for r in flagged] == [False, False, True, True, True]
    # A second round finds nothing new and keeps nothing twice.
    again = _round(w, link)
    assert (again.stored_in, again.pages, again.complete) == ([], 1, True)
    with w.store.read() as conn:
        assert conn.execute(select(func.count()).select_from(recovered_statements)).scalar() == 5


def test_our_own_messages_come_back_signed_by_us(pair):
    """The answer holds washington's own statements as moscow received them; washington checks
    them with its own key (the restored store may have lost them)."""
    w, m = pair["washington"], pair["moscow"]
    ids = [_send(w, "moscow", f"w{i}") for i in range(3)]
    _deliver(w, m)
    request = _request(w.identity)
    data = recovery.answer(m.identity, m.store, m.peer_cards(), request, datetime.now(UTC))
    asked = Asked("moscow", request, 0, 0, 0, merkle.EMPTY_ROOT)
    answer = verify_answer(
        w.identity,
        data,
        asked,
        responder_keys={m.identity.signing.public.key_id: m.identity.signing.public},
        own_keys={w.identity.signing.public.key_id: w.identity.signing.public},
    )
    assert [(i.direction, i.seq, i.id) for i in answer.items] == [
        (Direction.MINE, n + 1, ids[n]) for n in range(3)
    ]
    assert (answer.mine_last, answer.yours_last) == (3, 0)


def test_a_statement_too_large_for_any_answer_is_named_as_omitted(pair, monkeypatch):
    w, m = pair["washington"], pair["moscow"]
    _send(m, "washington", "m0")
    monkeypatch.setattr(recovery, "ANSWER_ITEMS_BUDGET", 1000)
    done = _round(w, _Loopback(w, m))
    assert done.stored_in == [] and done.omitted == ["yours seq 1 (too_large)"]
    assert done.complete


def test_a_damaged_answer_keeps_nothing_and_is_a_security_event(pair):
    w, m = pair["washington"], pair["moscow"]
    _send(m, "washington", "m0")

    def flip(data: bytes) -> bytes:
        return data[:-40] + bytes([data[-40] ^ 1]) + data[-39:]

    with pytest.raises(HotlineError) as refused:
        _round(w, _Loopback(w, m, damage=flip))
    assert refused.value.code == ErrorCode.DECRYPT_FAILED
    with w.store.read() as conn:
        assert list_recovered(conn, None, compromised={}) == []
        codes = [r[0] for r in conn.execute(select(security_events.c.code))]
    assert codes == ["decrypt_failed"]


def test_the_answering_node_refuses_what_it_should(pair):
    w, m = pair["washington"], pair["moscow"]
    now = datetime.now(UTC)
    stranger = Identity.generate("kyiv")
    with pytest.raises(VerificationError) as refused:  # not a peer of moscow
        recovery.answer(m.identity, m.store, m.peer_cards(), _request(stranger), now)
    assert refused.value.code == ErrorCode.UNKNOWN_SENDER
    impostor = Identity.generate("washington")  # washington's name, another key
    with pytest.raises(VerificationError):
        recovery.answer(m.identity, m.store, m.peer_cards(), _request(impostor), now)
    with pytest.raises(VerificationError) as refused:  # made for another node
        recovery.answer(m.identity, m.store, m.peer_cards(), _request(w.identity, to="kyiv"), now)
    assert refused.value.code == ErrorCode.WRONG_RECIPIENT
    stale = _request(w.identity, created=now - timedelta(minutes=10))
    with pytest.raises(HotlineError) as refused:
        recovery.answer(m.identity, m.store, m.peer_cards(), stale, now)
    assert refused.value.code == ErrorCode.REPLAY_CONFLICT
    # An answerer on hold itself (restored too) says "not now".
    with m.store.write() as conn:
        hold.put_on_hold(conn, reason=hold.RESTORED, detail="restored", now_us=0)
    with pytest.raises(StorageError) as refused:
        recovery.answer(m.identity, m.store, m.peer_cards(), _request(w.identity), now)
    assert refused.value.code == ErrorCode.TRANSCRIPT_HELD
