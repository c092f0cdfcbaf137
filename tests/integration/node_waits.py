"""What integration tests do while real node processes work: wait for a condition, read a
message's state from a node's store, send a text through a node's operator API."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from hotline.node.home import NodeHome
from hotline.store.messages import get_message


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Return once ``predicate()`` is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def message_state(home: NodeHome, message_id: str) -> str | None:
    """The message's state in ``home``'s store (None if the store has no such message)."""
    with home.store.read() as conn:
        view = get_message(conn, message_id, home.config.name)
    return None if view is None else view.state.value


def send_text(node: Any, to: str, text: str) -> str:
    """Send free text through ``node``'s operator API; the new message's id."""
    with node.api() as api:
        response = api.post("/api/v1/messages", json={"to": to, "text": text})
    assert response.status_code == 200, response.text
    return str(response.json()["id"])
