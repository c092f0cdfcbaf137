"""The frontier an append remembers for the next one (``Connection.info``): taken only while the
log is still the size it was committed at, and never remembered from a rolled-back append."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import hotline.transcript as transcript
from hotline.core import merkle
from hotline.store import Store


def _entry(name: str) -> transcript.NewEntry:
    return transcript.NewEntry(name.encode(), "test", name)


def _append(store: Store, *names: str) -> transcript.Appended:
    with store.write() as conn:
        return transcript.append(conn, [_entry(n) for n in names])


def test_a_rolled_back_append_is_not_remembered(store_url: Callable[[Path], str], tmp_path):
    """Had the rolled-back append's frontier been kept, the log (a, c) would be taken for
    (a, b), which has the same size, and d's root would be wrong."""
    url = store_url(tmp_path / "log.db")
    store, other = Store.open(url), Store.open(url, migrate_schema=False)
    try:
        _append(store, "a")
        with pytest.raises(RuntimeError), store.write() as conn:
            transcript.append(conn, [_entry("b")])
            raise RuntimeError("rolled back after the append")
        _append(other, "c")  # another writer takes the second place
        assert _append(store, "d").root == merkle.merkle_root([b"a", b"c", b"d"])
    finally:
        store.close()
        other.close()


def test_a_log_grown_by_another_writer_is_read_again(store_url: Callable[[Path], str], tmp_path):
    url = store_url(tmp_path / "log.db")
    store, other = Store.open(url), Store.open(url, migrate_schema=False)
    try:
        _append(store, "a", "b", "c")
        _append(other, "d", "e")
        assert _append(store, "f").root == merkle.merkle_root([n.encode() for n in "abcdef"])
        assert _append(other, "g").root == merkle.merkle_root([n.encode() for n in "abcdefg"])
    finally:
        store.close()
        other.close()


def test_the_next_append_reads_no_frontier(store_url: Callable[[Path], str], tmp_path):
    store = Store.open(store_url(tmp_path / "log.db"))
    try:
        if store.engine.dialect.name != "sqlite":
            pytest.skip("counts statements with SQLite's trace callback")
        _append(store, "a", "b", "c")  # a frontier of two subtrees: (1, 0) and the leaf (0, 2)
        statements: list[str] = []
        with store.write() as conn:
            conn.connection.dbapi_connection.set_trace_callback(statements.append)  # type: ignore[union-attr]
            appended = transcript.append(conn, [_entry("d")])
            conn.connection.dbapi_connection.set_trace_callback(None)  # type: ignore[union-attr]
        assert appended.root == merkle.merkle_root([b"a", b"b", b"c", b"d"])
        reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
        assert not any("hash" in s for s in reads), reads  # only the size (and the hold)
    finally:
        store.close()
