"""On PostgreSQL the large byte columns are stored uncompressed (migration 0017: compressing
ciphertext and signatures was a third of the server's CPU on the link's burst)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from hotline.store.db import create_store_engine, migrate


def test_large_byte_columns_are_not_compressed(tmp_path: Path, store_url) -> None:
    engine = create_store_engine(store_url(tmp_path / "store.sqlite"))
    try:
        if engine.dialect.name != "postgresql":
            pytest.skip("PostgreSQL only: SQLite never compresses")
        migrate(engine)
        with engine.connect() as conn:
            storage = dict(
                conn.execute(
                    text(
                        "SELECT c.relname || '.' || a.attname, a.attstorage FROM pg_attribute a "
                        "JOIN pg_class c ON c.oid = a.attrelid WHERE a.attnum > 0 AND "
                        "c.relname IN ('messages', 'receipts', 'peer_tree_heads')"
                    )
                ).all()
            )
    finally:
        engine.dispose()
    for column in (
        "messages.envelope",
        "messages.signed",
        "receipts.signed",
        "peer_tree_heads.evidence",
    ):
        assert storage[column] == "e", column
    assert storage["messages.body"] == "x"  # text stays compressible
