"""SQLite write transactions take the write lock at BEGIN (``BEGIN IMMEDIATE``, issued on the
driver's connection): a store whose lock another process holds past the busy timeout refuses
the write with ``StorageError`` and leaves nothing half-written; the next write succeeds."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

import hotline.store.db as db
from hotline.errors import StorageError
from hotline.store import Store
from hotline.store.schema import inbound_gaps


def test_a_write_waits_for_the_lock_then_fails_as_a_storage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_MS", 50)
    path = tmp_path / "store.sqlite"
    store = Store.open(db.sqlite_url(path))
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with pytest.raises(StorageError, match="database is locked"), store.write() as conn:
            conn.execute(inbound_gaps.insert().values(peer="moscow", seq=1, noticed_at_us=1))
    finally:
        other.execute("ROLLBACK")
        other.close()
    with store.write() as conn:
        conn.execute(inbound_gaps.insert().values(peer="moscow", seq=2, noticed_at_us=2))
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(inbound_gaps)).scalar_one() == 1
    store.close()


def _gap_count(store: Store) -> int:
    with store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(inbound_gaps)).scalar_one())


def test_the_main_thread_keeps_its_writer_connection(tmp_path: Path, store_url) -> None:
    """The main thread's write transactions share one connection (taken from the pool once);
    another thread takes one from the pool for its transaction and gives it back; a write
    opened inside another of the same thread is refused at once (it would otherwise wait for
    the first one's lock)."""
    store = Store.open(store_url(tmp_path / "store.sqlite"))
    try:
        with store.write() as first:
            first.execute(inbound_gaps.insert().values(peer="moscow", seq=1, noticed_at_us=1))
            held = first.connection.dbapi_connection
            with pytest.raises(StorageError, match="already open"), store.write():
                pass
        with store.write() as again:
            assert again.connection.dbapi_connection is held
        seen: list[object] = []

        def in_other_thread() -> None:
            with store.write() as conn:
                conn.execute(inbound_gaps.insert().values(peer="moscow", seq=2, noticed_at_us=2))
                seen.append(conn.connection.dbapi_connection)
            seen.append(store.engine.pool.checkedout())

        worker = threading.Thread(target=in_other_thread)
        worker.start()
        worker.join()
        assert seen[0] is not held
        assert seen[1] == 1  # given back: only the main thread's is out
        assert _gap_count(store) == 2
    finally:
        store.close()


def test_a_closed_store_writes_again_on_a_new_connection(tmp_path: Path, store_url) -> None:
    store = Store.open(store_url(tmp_path / "store.sqlite"))
    try:
        with store.write() as conn:
            conn.execute(inbound_gaps.insert().values(peer="moscow", seq=1, noticed_at_us=1))
            kept = conn
        store.close()
        assert kept.closed
        with store.write() as conn:
            assert conn is not kept
            conn.execute(inbound_gaps.insert().values(peer="moscow", seq=2, noticed_at_us=2))
        assert _gap_count(store) == 2
    finally:
        store.close()


def test_an_invalidated_writer_connection_is_replaced(tmp_path: Path, store_url) -> None:
    """A connection the driver lost (a PostgreSQL server gone, say) fails its transaction and
    is not used again: the next write takes a new one."""
    store = Store.open(store_url(tmp_path / "store.sqlite"))
    try:
        with pytest.raises(RuntimeError), store.write() as conn:
            lost = conn
            conn.invalidate()
            raise RuntimeError("the transaction fails with its connection")
        with store.write() as conn:
            assert conn is not lost
            conn.execute(inbound_gaps.insert().values(peer="moscow", seq=1, noticed_at_us=1))
        assert _gap_count(store) == 1
    finally:
        store.close()
