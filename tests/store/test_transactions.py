"""SQLite write transactions take the write lock at BEGIN (``BEGIN IMMEDIATE``, issued on the
driver's connection): a store whose lock another process holds past the busy timeout refuses
the write with ``StorageError`` and leaves nothing half-written; the next write succeeds."""

from __future__ import annotations

import sqlite3
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
