"""The long-poll of ``send ... wait=delivered``: woken by each change, it answers from the state
the change committed when the change carries it, and reads the store when it does not."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from hotline.node.home import NodeHome
from hotline.node.runtime import Node
from hotline.store.messages import State

TARGETS = {"delivered", "acknowledged", "answered"}


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    home = NodeHome.init(
        tmp_path / "w", name="washington", listen="127.0.0.1:1", display_names={"en": "W"}
    )
    yield Node(home)
    home.close()


def _wait(node: Node, notify: dict[str, State] | None) -> tuple[State, list[str]]:
    reads: list[str] = []

    def state(message_id: str) -> State:
        reads.append(message_id)
        return State.SENT

    node.state = state  # type: ignore[method-assign]

    async def go() -> State:
        waiting = asyncio.create_task(node.wait_for_state_value("m1", TARGETS, 0.2, unchanged=True))
        await asyncio.sleep(0)  # the long-poll is waiting
        node.notify_changed(notify)
        return await waiting

    return asyncio.run(go()), reads


def test_the_state_a_change_carries_answers_without_a_read(node: Node) -> None:
    assert _wait(node, {"m1": State.DELIVERED}) == (State.DELIVERED, [])


def test_a_change_that_carries_another_messages_state_is_looked_up(node: Node) -> None:
    # The store is read (here: still sent, so the long-poll waits on and, at its timeout,
    # answers the store's state).
    state, reads = _wait(node, {"m2": State.DELIVERED})
    assert state is State.SENT and reads and set(reads) == {"m1"}


def test_a_change_that_carries_no_state_is_looked_up(node: Node) -> None:
    state, reads = _wait(node, None)
    assert state is State.SENT and reads and set(reads) == {"m1"}
