"""A restored node's recovery of its lost tail (hotline.core.recovery): the request, the sealed
answer, and every refusal of an answer: a forged statement, a bad proof, a head that does not
extend ours, an oversized or malformed answer. Nothing here touches a store or the network: the
responder's log is built in memory with the RFC 9162 functions."""

from __future__ import annotations

import contextlib
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hotline.core import merkle
from hotline.core.card import Identity
from hotline.core.encoding import encode_json
from hotline.core.envelope import ReceiptItem, ReceiptKind, sign_message, sign_receipt
from hotline.core.keys import Purpose, SigningKey, SigningPublicKey
from hotline.core.recovery import (
    MAX_ANSWER_BYTES,
    MAX_ANSWER_ITEMS,
    AnswerItem,
    Asked,
    Direction,
    Omitted,
    OmittedReason,
    Request,
    parse_answer_payload,
    seal_answer,
    sign_request,
    verify_answer,
    verify_request,
)
from hotline.core.treehead import sign_tree_head
from hotline.errors import ErrorCode, HotlineError, ProtocolError, VerificationError, WireError

NOW = datetime(2026, 11, 26, 16, 0, tzinfo=UTC)
ID = "01a215d6-ac00-7000-8000-0000000000{:02x}"
SIGNED = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def washington() -> Identity:
    return Identity.generate("washington")


@pytest.fixture(scope="module")
def moscow() -> Identity:
    return Identity.generate("moscow")


def _message(author: Identity, to: str, seq: int, text: str) -> bytes:
    return sign_message(
        author,
        to=to,
        message_id=ID.format(seq + (0 if author.name == "moscow" else 0x80)),
        seq=seq,
        created=NOW,
        msg_type="free_text",
        priority="routine",
        body={"text": text},
    )


def _keys(identity: Identity) -> dict[bytes, SigningPublicKey]:
    return {identity.signing.public.key_id: identity.signing.public}


@dataclasses.dataclass
class Tail:
    """moscow's log: some entries of its own, then the link's statements after washington's
    backup (washington's seq 2.. and moscow's seq 2..), then more of its own."""

    statements: list[bytes]
    where: dict[tuple[Direction, int], int]

    @property
    def leaves(self) -> list[bytes]:
        return [merkle.leaf_hash(s) for s in self.statements]

    def head(self, moscow: Identity, size: int | None = None):
        size = len(self.statements) if size is None else size
        root = merkle.root_from_leaf_hashes(self.leaves[:size])
        return sign_tree_head(moscow, size=size, root=root, time=NOW)

    def item(self, direction: Direction, seq: int, size: int | None = None) -> AnswerItem:
        index = self.where[(direction, seq)]
        size = len(self.statements) if size is None else size
        return AnswerItem(
            direction,
            seq,
            self.statements[index],
            index,
            tuple(merkle.inclusion_proof(self.leaves[:size], index)),
        )


def _tail(washington: Identity, moscow: Identity, mine: int = 2, yours: int = 2) -> Tail:
    statements = [b"earlier entry %d" % i for i in range(5)]
    where: dict[tuple[Direction, int], int] = {}
    for seq in range(2, 2 + mine):
        where[(Direction.MINE, seq)] = len(statements)
        statements.append(_message(washington, "moscow", seq, f"lost w{seq}"))
    for seq in range(2, 2 + yours):
        where[(Direction.YOURS, seq)] = len(statements)
        statements.append(_message(moscow, "washington", seq, f"lost m{seq}"))
    statements.append(b"a later entry")
    return Tail(statements, where)


def _ask(washington: Identity, tail: Tail, known_size: int = 3) -> tuple[Asked, Request]:
    statement = sign_request(
        washington,
        responder="moscow",
        request_id=ID.format(0xFF),
        created=NOW,
        yours_after=1,
        mine_after=1,
        known_size=known_size,
    )
    asked = Asked(
        responder="moscow",
        request=statement,
        yours_after=1,
        mine_after=1,
        known_size=known_size,
        known_root=merkle.root_from_leaf_hashes(tail.leaves[:known_size]),
    )
    return asked, _request(statement, washington)


def _request(statement: bytes, washington: Identity) -> Request:
    return verify_request(
        statement, washington.signing.public, requester="washington", responder="moscow", now=NOW
    )


def _answer(
    washington: Identity,
    moscow: Identity,
    tail: Tail,
    request: Request,
    items: list[AnswerItem],
    *,
    known_size: int = 3,
    head=None,
    omitted: list[Omitted] | None = None,
    more: bool = False,
) -> bytes:
    head = head or tail.head(moscow)
    return seal_answer(
        moscow,
        request,
        recipient_key=_encryption_key(washington),
        tree_head=head,
        consistency=merkle.consistency_proof(tail.leaves[: head.size], known_size),
        yours_last=3,
        mine_last=3,
        items=items,
        omitted=omitted or [],
        more=more,
    )


def _encryption_key(identity: Identity):
    return identity.decryption.public


def _verify(washington: Identity, moscow: Identity, data: bytes, asked: Asked):
    return verify_answer(
        washington, data, asked, responder_keys=_keys(moscow), own_keys=_keys(washington)
    )


def _all_items(tail: Tail) -> list[AnswerItem]:
    return [tail.item(d, s) for d, s in sorted(tail.where, key=lambda k: (k[0] != "yours", k[1]))]


# -- the answer that holds ------------------------------------------------------------------


def test_both_directions_of_a_lost_tail_verify(washington, moscow):
    tail = _tail(washington, moscow)
    asked, request = _ask(washington, tail)
    data = _answer(washington, moscow, tail, request, _all_items(tail))
    answer = _verify(washington, moscow, data, asked)
    assert answer.head.size == len(tail.statements)
    got = {(r.direction, r.seq): r for r in answer.items}
    assert set(got) == set(tail.where)
    assert got[(Direction.MINE, 3)].payload.body == {"text": "lost w3"}
    assert got[(Direction.YOURS, 2)].key_id == moscow.signing.public.key_id
    assert got[(Direction.MINE, 2)].key_id == washington.signing.public.key_id
    assert not answer.unverifiable and not answer.more


def test_our_messages_signed_by_an_earlier_key_of_ours_verify(washington, moscow):
    """Our own statements are checked with every key of our key history, not only today's."""
    old = Identity("washington", SigningKey.generate(), washington.decryption)
    tail = _tail(old, moscow, mine=1, yours=0)
    asked, request = _ask(washington, tail)
    data = _answer(washington, moscow, tail, request, _all_items(tail))
    keys = {**_keys(washington), **_keys(old)}
    answer = verify_answer(washington, data, asked, responder_keys=_keys(moscow), own_keys=keys)
    assert [r.key_id for r in answer.items] == [old.signing.public.key_id]
    # Without that key in the history the statement is not verifiable, and not presented so.
    answer = _verify(washington, moscow, data, asked)
    assert answer.items == ()
    assert [(u.direction, u.seq) for u in answer.unverifiable] == [(Direction.MINE, 2)]


def test_an_acknowledged_receipt_is_recovered_as_a_sequenced_statement(washington, moscow):
    receipt = sign_receipt(
        moscow,
        to="washington",
        receipt_id=ID.format(0x40),
        created=NOW,
        kind=ReceiptKind.ACKNOWLEDGED,
        items=[ReceiptItem(ID.format(0x81), 1, "00" * 32, "00" * 32)],
        seq=2,
        operator="ivanov",
    )
    tail = Tail([b"x", receipt, b"y"], {(Direction.YOURS, 2): 1})
    asked, request = _ask(washington, tail, known_size=1)
    data = _answer(washington, moscow, tail, request, _all_items(tail), known_size=1)
    (item,) = _verify(washington, moscow, data, asked).items
    assert (item.kind, item.seq, item.id) == ("receipt", 2, ID.format(0x40))


# -- refusals ---------------------------------------------------------------------------------


def test_a_forged_statement_refuses_the_whole_answer(washington, moscow):
    """moscow's statement with one byte of its payload changed: its signature fails."""
    tail = _tail(washington, moscow)
    index = tail.where[(Direction.YOURS, 2)]
    forged = bytearray(tail.statements[index])
    at = bytes(forged).index(b"lost m2")
    forged[at : at + 7] = b"fake m2"
    tail.statements[index] = bytes(forged)  # the log (and its proof) hold the forgery
    asked, request = _ask(washington, tail)
    data = _answer(washington, moscow, tail, request, _all_items(tail))
    with pytest.raises(VerificationError) as refused:
        _verify(washington, moscow, data, asked)
    assert refused.value.code == ErrorCode.BAD_SIGNATURE


def test_a_statement_of_ours_made_up_by_the_peer_is_never_verified(washington, moscow):
    """moscow cannot sign as washington: a "washington" message signed by moscow's key is
    refused (the key id names moscow's key, which is not ours)."""
    made_up = moscow.signing.sign(
        Purpose.MESSAGE,
        encode_json(
            {
                "v": 1,
                "id": ID.format(0x90),
                "from": "washington",
                "to": "moscow",
                "seq": 2,
                "created": "2026-11-26T16:00:00Z",
                "type": "free_text",
                "priority": "routine",
                "body": {"text": "we surrender"},
            }
        ),
    )
    tail = Tail([b"x", made_up, b"y"], {(Direction.MINE, 2): 1})
    asked, request = _ask(washington, tail, known_size=1)
    data = _answer(washington, moscow, tail, request, _all_items(tail), known_size=1)
    answer = _verify(washington, moscow, data, asked)
    assert answer.items == ()
    assert [u.seq for u in answer.unverifiable] == [2]


def test_a_signed_id_that_is_no_uuid_is_refused(washington, moscow):
    """On the link the header's UUID id must equal the signed one; a recovered statement has no
    header, so its signed id is checked itself."""
    odd = sign_message(
        moscow,
        to="washington",
        message_id="x" * 200,
        seq=2,
        created=NOW,
        msg_type="free_text",
        priority="routine",
        body={"text": "m2"},
    )
    tail = Tail([b"x", odd, b"y"], {(Direction.YOURS, 2): 1})
    asked, request = _ask(washington, tail, known_size=1)
    data = _answer(washington, moscow, tail, request, _all_items(tail), known_size=1)
    with pytest.raises(WireError):
        _verify(washington, moscow, data, asked)


def test_a_statement_signed_for_the_other_direction_is_refused(washington, moscow):
    tail = _tail(washington, moscow)
    item = tail.item(Direction.MINE, 2)
    swapped = dataclasses.replace(item, direction=Direction.YOURS)
    asked, request = _ask(washington, tail)
    data = _answer(washington, moscow, tail, request, [swapped])
    answer = _verify(washington, moscow, data, asked)  # washington's key is not moscow's
    assert answer.items == ()
    assert [(u.direction, u.seq) for u in answer.unverifiable] == [(Direction.YOURS, 2)]


def test_a_bad_inclusion_proof_refuses_the_whole_answer(washington, moscow):
    tail = _tail(washington, moscow)
    good = tail.item(Direction.YOURS, 3)
    proof = list(good.proof)
    proof[0] = bytes(32)
    bad = dataclasses.replace(good, proof=tuple(proof))
    asked, request = _ask(washington, tail)
    data = _answer(washington, moscow, tail, request, [tail.item(Direction.YOURS, 2), bad])
    with pytest.raises(VerificationError) as refused:
        _verify(washington, moscow, data, asked)
    assert refused.value.code == ErrorCode.BAD_PROOF


def test_a_leaf_outside_the_signed_head_is_refused(washington, moscow):
    tail = _tail(washington, moscow)
    item = tail.item(Direction.YOURS, 2)
    moved = dataclasses.replace(item, index=len(tail.statements) + 5)
    asked, request = _ask(washington, tail)
    data = _answer(washington, moscow, tail, request, [moved])
    with pytest.raises(VerificationError) as refused:
        _verify(washington, moscow, data, asked)
    assert refused.value.code == ErrorCode.BAD_PROOF


def test_a_head_that_does_not_extend_the_head_we_hold_is_refused(washington, moscow):
    """The answer's log is another history than the one whose head of size 3 we hold."""
    tail = _tail(washington, moscow)
    asked, request = _ask(washington, tail)
    other = dataclasses.replace(asked, known_root=merkle.leaf_hash(b"another history"))
    data = _answer(washington, moscow, tail, request, _all_items(tail))
    with pytest.raises(VerificationError) as refused:
        _verify(washington, moscow, data, other)
    assert refused.value.code == ErrorCode.BAD_PROOF
    # A head smaller than the one we hold is refused too.
    larger = dataclasses.replace(asked, known_size=len(tail.statements) + 1)
    with pytest.raises(VerificationError):
        _verify(washington, moscow, data, larger)


def test_an_answer_to_another_request_does_not_open(washington, moscow):
    tail = _tail(washington, moscow)
    asked, request = _ask(washington, tail)
    data = _answer(washington, moscow, tail, request, _all_items(tail))
    again = sign_request(
        washington,
        responder="moscow",
        request_id=ID.format(0xFE),
        created=NOW,
        yours_after=1,
        mine_after=1,
        known_size=3,
    )
    with pytest.raises(VerificationError) as refused:
        _verify(washington, moscow, data, dataclasses.replace(asked, request=again))
    assert refused.value.code == ErrorCode.DECRYPT_FAILED


def test_an_answer_signed_by_another_node_is_refused(washington, moscow):
    mallory = Identity.generate("moscow")  # moscow's name, not moscow's key
    tail = _tail(washington, moscow)
    asked, request = _ask(washington, tail)
    data = _answer(washington, mallory, tail, request, _all_items(tail))
    with pytest.raises(VerificationError) as refused:
        _verify(washington, moscow, data, asked)
    assert refused.value.code == ErrorCode.UNKNOWN_KEY


def test_statements_not_asked_for_or_listed_twice_are_refused(washington, moscow):
    tail = _tail(washington, moscow)
    asked, request = _ask(washington, tail)
    twice = [tail.item(Direction.YOURS, 2), tail.item(Direction.YOURS, 2)]
    with pytest.raises(WireError):
        _verify(washington, moscow, _answer(washington, moscow, tail, request, twice), asked)
    below = dataclasses.replace(asked, yours_after=2)
    data = _answer(washington, moscow, tail, request, [tail.item(Direction.YOURS, 2)])
    with pytest.raises(HotlineError):
        _verify(washington, moscow, data, below)


def test_an_item_whose_signed_seq_differs_is_refused(washington, moscow):
    tail = _tail(washington, moscow)
    item = dataclasses.replace(tail.item(Direction.YOURS, 2), seq=7)
    asked, request = _ask(washington, tail)
    with pytest.raises(VerificationError) as refused:
        _verify(washington, moscow, _answer(washington, moscow, tail, request, [item]), asked)
    assert refused.value.code == ErrorCode.HEADER_MISMATCH


def test_an_oversized_answer_is_refused_before_it_is_opened(washington, moscow):
    tail = _tail(washington, moscow)
    asked = _ask(washington, tail)[0]
    with pytest.raises(WireError) as refused:
        _verify(washington, moscow, bytes(MAX_ANSWER_BYTES + 1), asked)
    assert refused.value.code == ErrorCode.TOO_LARGE


def test_an_answer_with_too_many_items_is_refused(washington, moscow):
    item = {"dir": "yours", "seq": 1, "statement": "", "index": 0, "proof": []}
    payload = _payload(items=[item] * (MAX_ANSWER_ITEMS + 1))
    with pytest.raises(WireError) as refused:
        parse_answer_payload(encode_json(payload))
    assert refused.value.code == ErrorCode.TOO_LARGE
    # A responder refuses to make one.
    tail = _tail(washington, moscow)
    _asked, request = _ask(washington, tail)
    one = tail.item(Direction.YOURS, 2)
    with pytest.raises(WireError):
        _answer(washington, moscow, tail, request, [one] * (MAX_ANSWER_ITEMS + 1))


def test_omitted_statements_are_listed_not_verified(washington, moscow):
    tail = _tail(washington, moscow)
    asked, request = _ask(washington, tail)
    data = _answer(
        washington,
        moscow,
        tail,
        request,
        [tail.item(Direction.YOURS, 2)],
        omitted=[Omitted(Direction.MINE, 2, OmittedReason.TOO_LARGE)],
        more=True,
    )
    answer = _verify(washington, moscow, data, asked)
    assert [(i.direction, i.seq) for i in answer.items] == [(Direction.YOURS, 2)]
    assert answer.omitted == (Omitted(Direction.MINE, 2, OmittedReason.TOO_LARGE),)
    assert answer.more


# -- the request ------------------------------------------------------------------------------


def test_a_request_is_checked_for_signer_recipient_and_age(washington, moscow):
    statement = sign_request(
        washington,
        responder="moscow",
        request_id=ID.format(1),
        created=NOW,
        yours_after=4,
        mine_after=2,
        known_size=9,
    )
    request = _request(statement, washington)
    assert (request.yours_after, request.mine_after, request.known_size) == (4, 2, 9)
    with pytest.raises(VerificationError):  # signed by washington, checked with moscow's key
        verify_request(
            statement, moscow.signing.public, requester="washington", responder="moscow", now=NOW
        )
    with pytest.raises(VerificationError) as refused:  # made for moscow, arriving at kyiv
        verify_request(
            statement,
            washington.signing.public,
            requester="washington",
            responder="kyiv",
            now=NOW,
        )
    assert refused.value.code == ErrorCode.WRONG_RECIPIENT
    with pytest.raises(ProtocolError):  # ten minutes old
        verify_request(
            statement,
            washington.signing.public,
            requester="washington",
            responder="moscow",
            now=NOW + timedelta(minutes=10),
        )
    heartbeat = washington.signing.sign(Purpose.HEARTBEAT, b"{}")
    with pytest.raises(VerificationError) as refused:
        _request(heartbeat, washington)
    assert refused.value.code == ErrorCode.WRONG_PURPOSE


# -- properties -------------------------------------------------------------------------------


def _payload(**changes: object) -> dict[str, object]:
    payload: dict[str, object] = {
        "v": 1,
        "from": "moscow",
        "to": "washington",
        "request": "00" * 32,
        "tree_head": "",
        "consistency": [],
        "yours_last": 0,
        "mine_last": 0,
        "items": [],
        "omitted": [],
        "more": False,
    }
    payload.update(changes)
    return payload


def _nested(inner: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=12),
    _nested,
    max_leaves=10,
)
FIELDS = [
    "v",
    "from",
    "to",
    "request",
    "tree_head",
    "consistency",
    "yours_last",
    "mine_last",
    "items",
    "omitted",
    "more",
]


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=600) | JSON.map(encode_json))
def test_arbitrary_answer_payloads_get_a_typed_error(data):
    with contextlib.suppress(HotlineError):
        parse_answer_payload(data)


@settings(max_examples=300, deadline=None)
@given(
    field=st.sampled_from([*FIELDS, "items.dir", "items.seq", "items.index", "omitted.reason"]),
    value=JSON,
)
def test_answer_payloads_with_odd_fields_parse_or_get_a_typed_error(field, value):
    item = {"dir": "yours", "seq": 2, "statement": "", "index": 0, "proof": []}
    omitted = {"dir": "mine", "seq": 2, "reason": "too_large"}
    payload = _payload(items=[item], omitted=[omitted])
    if field.startswith("items."):
        item[field.split(".")[1]] = value
    elif field.startswith("omitted."):
        omitted[field.split(".")[1]] = value
    else:
        payload[field] = value
    try:
        parsed = parse_answer_payload(encode_json(payload))
    except HotlineError:
        return
    for i in parsed.items:
        assert i.dir in ("yours", "mine") and i.seq >= 1 and i.index >= 0
    assert all(o.reason in ("too_large", "not_logged") for o in parsed.omitted)


@SIGNED
@given(mine=st.integers(0, 3), yours=st.integers(0, 3), known=st.integers(0, 5))
def test_every_tail_verifies_whatever_its_shape(washington, moscow, mine, yours, known):
    tail = _tail(washington, moscow, mine=mine, yours=yours)
    asked, request = _ask(washington, tail, known_size=known)
    data = _answer(washington, moscow, tail, request, _all_items(tail), known_size=known)
    answer = _verify(washington, moscow, data, asked)
    assert {(r.direction, r.seq) for r in answer.items} == set(tail.where)


@pytest.fixture(scope="module")
def sealed(washington, moscow) -> tuple[bytes, Asked]:
    tail = _tail(washington, moscow, mine=1, yours=1)
    asked, request = _ask(washington, tail)
    return _answer(washington, moscow, tail, request, _all_items(tail)), asked


@SIGNED
@given(data=st.data())
def test_any_change_to_a_sealed_answer_is_refused(washington, moscow, sealed, data):
    answer, asked = sealed
    position = data.draw(st.integers(0, len(answer) - 1))
    flip = data.draw(st.integers(1, 255))
    damaged = answer[:position] + bytes([answer[position] ^ flip]) + answer[position + 1 :]
    with pytest.raises(HotlineError):
        _verify(washington, moscow, damaged, asked)
