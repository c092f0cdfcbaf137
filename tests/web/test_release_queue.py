"""Two-person release: FLASH waits for a second person; the author can never release it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from hotline.errors import ErrorCode, HotlineError, InputError, ProtocolError
from hotline.operators import ForbiddenError, Operator, OperatorRegistry
from hotline.operators.release import ReleaseQueue, ReleaseRequest, ReleaseState, needs_release
from hotline.store import Store

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
BODY = {"text": "Launch detected", "lang": "en"}


@pytest.fixture
def people(tmp_path: Path, store_url) -> Iterator[tuple[ReleaseQueue, dict[str, Operator]]]:
    store = Store.open(store_url(tmp_path / "store.sqlite"))
    registry = OperatorRegistry(
        store, issuer="t", hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )
    ops = {
        name: registry.add(name, role, "a long password!", now=NOW).operator
        for name, role in [
            ("olga", "operator"),
            ("oleg", "operator"),
            ("rita", "releaser"),
            ("ruth", "releaser"),
            ("adam", "auditor"),
        ]
    }
    yield ReleaseQueue(store), ops
    store.close()


def submit(queue: ReleaseQueue, author: Operator) -> ReleaseRequest:
    return queue.submit(
        author,
        msg_type="free_text",
        priority="flash",
        recipients=["moscow", "beijing"],
        body=BODY,
        in_reply_to=None,
        now=NOW,
    )


def test_only_flash_needs_release() -> None:
    assert needs_release("flash")
    assert not any(needs_release(p) for p in ("immediate", "priority", "routine"))


def test_a_second_person_releases_and_the_messages_are_sent(
    people: tuple[ReleaseQueue, dict[str, Operator]],
) -> None:
    queue, ops = people
    request = submit(queue, ops["olga"])
    assert [r.id for r in queue.pending()] == [request.id]
    sent: list[ReleaseRequest] = []

    def send(r: ReleaseRequest) -> list[str]:
        sent.append(r)
        return [f"m-{peer}" for peer in r.recipients]

    done = queue.approve(request.id, ops["rita"], now=NOW, send=send)
    assert done.state is ReleaseState.RELEASED and done.decided_by == "rita"
    assert done.message_ids == ("m-moscow", "m-beijing")
    assert sent[0].body == BODY and sent[0].state is ReleaseState.RELEASING
    # What the link signs into each message while it is being sent.
    assert sent[0].signed_identity() == {"author": "olga", "released_by": "rita"}
    assert done.signed_identity() == {"author": "olga", "released_by": "rita"}
    assert queue.pending() == [] and [r.id for r in queue.recent()] == [request.id]
    with pytest.raises(ProtocolError) as e:  # decided once
        queue.approve(request.id, ops["ruth"], now=NOW, send=send)
    assert e.value.code is ErrorCode.INVALID_STATE
    assert len(sent) == 1


@pytest.mark.parametrize("decider", ["olga", "oleg", "adam"])
def test_the_author_and_other_roles_cannot_release(
    people: tuple[ReleaseQueue, dict[str, Operator]], decider: str
) -> None:
    queue, ops = people
    request = submit(queue, ops["olga"])
    with pytest.raises(ForbiddenError):
        queue.approve(request.id, ops[decider], now=NOW, send=lambda r: ["x"])
    with pytest.raises(ForbiddenError):
        queue.reject(request.id, ops[decider], "no", now=NOW)
    assert queue.get(request.id).state is ReleaseState.PENDING


def test_a_releaser_cannot_release_their_own_message(
    people: tuple[ReleaseQueue, dict[str, Operator]],
) -> None:
    queue, ops = people
    request = submit(queue, ops["rita"])
    with pytest.raises(ForbiddenError, match="second person"):
        queue.approve(request.id, ops["rita"], now=NOW, send=lambda r: ["x"])
    assert queue.approve(request.id, ops["ruth"], now=NOW, send=lambda r: ["x"]).state == "released"


def test_rejection_needs_a_reason(people: tuple[ReleaseQueue, dict[str, Operator]]) -> None:
    queue, ops = people
    request = submit(queue, ops["olga"])
    with pytest.raises(InputError):
        queue.reject(request.id, ops["rita"], "   ", now=NOW)
    done = queue.reject(request.id, ops["rita"], "Wrong recipient", now=NOW)
    assert (done.state, done.reason, done.message_ids) == (
        ReleaseState.REJECTED,
        "Wrong recipient",
        (),
    )
    assert done.signed_identity() == {"author": "olga"}


def test_a_failed_send_puts_the_request_back(
    people: tuple[ReleaseQueue, dict[str, Operator]],
) -> None:
    queue, ops = people
    request = submit(queue, ops["olga"])

    def broken(r: ReleaseRequest) -> list[str]:
        raise HotlineError("store is full")

    with pytest.raises(HotlineError):
        queue.approve(request.id, ops["rita"], now=NOW, send=broken)
    back = queue.get(request.id)
    assert back.state is ReleaseState.PENDING and back.decided_by is None


def test_an_auditor_cannot_submit(people: tuple[ReleaseQueue, dict[str, Operator]]) -> None:
    queue, ops = people
    with pytest.raises(ForbiddenError):
        submit(queue, ops["adam"])
