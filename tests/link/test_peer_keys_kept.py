"""What ``keyring.peer_keys`` keeps between batches (on SQLite) is never stale: a change of a
peer key's standing is seen by the next batch, whether this process wrote it, another
connection or another process did, and a change that rolled back is never seen."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from hotline.core.keyevents import KeyState
from hotline.link import keyring
from hotline.node.home import NodeHome
from hotline.store import Store


def _state(w: NodeHome) -> KeyState:
    """The standing of moscow's key as washington's inbox reads it for a batch."""
    card = w.peer_card("moscow")
    with w.store.write() as conn:
        return keyring.peer_keys(conn, card)[card.signing_key.key_id][1].state


def _revoke(conn, w: NodeHome) -> None:
    card = w.peer_card("moscow")
    keyring._set_peer_key_state(
        conn, "moscow", card.signing_key.key_id, KeyState.REVOKED, revoked_at_us=1
    )


def test_a_revocation_another_connection_commits_is_seen_at_once(pair):
    w = pair["washington"]
    assert _state(w) == KeyState.ACTIVE  # read, and kept
    assert _state(w) == KeyState.ACTIVE  # given again
    url = w.store.engine.url.render_as_string(hide_password=False)
    other = Store.open(url, migrate_schema=False)  # another process's connection, as the CLI's
    try:
        with other.write() as conn:
            conn.execute(
                update(keyring.key_history)
                .where(keyring.key_history.c.owner == "moscow")
                .values(state=KeyState.REVOKED.value, revoked_at_us=1)
            )
    finally:
        other.close()
    assert _state(w) == KeyState.REVOKED


def test_a_revocation_this_connection_commits_is_seen_at_once(pair):
    w = pair["washington"]
    assert _state(w) == KeyState.ACTIVE
    with w.store.write() as conn:
        _revoke(conn, w)
    assert _state(w) == KeyState.REVOKED


def test_a_revocation_that_rolled_back_is_never_seen(pair):
    """Read inside the transaction that revoked, the key is revoked; that answer must not
    outlive the transaction, which rolls back."""
    w = pair["washington"]
    assert _state(w) == KeyState.ACTIVE
    card = w.peer_card("moscow")
    with pytest.raises(RuntimeError), w.store.write() as conn:
        _revoke(conn, w)
        assert keyring.peer_keys(conn, card)[card.signing_key.key_id][1].state == KeyState.REVOKED
        raise RuntimeError("rolled back")
    assert _state(w) == KeyState.ACTIVE
