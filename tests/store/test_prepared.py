"""The hot path's prepared statements on the test engine (SQLite, or PostgreSQL with
HOTLINE_TEST_STORE): a multi-row insert writes every row, in order, with NULLs and bytes intact,
for any count (the statement sizes are the binary digits of the count)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.exc import ArgumentError, IntegrityError

from hotline.store.db import create_store_engine, migrate
from hotline.store.messages import MESSAGE_COLUMNS
from hotline.store.prepared import PreparedInsert, prepared_insert
from hotline.store.schema import inbound_gaps, messages


@pytest.fixture
def engine(tmp_path: Path, store_url) -> Iterator[Engine]:
    eng = create_store_engine(store_url(tmp_path / "store.sqlite"))
    migrate(eng)
    yield eng
    eng.dispose()


def _row(i: int) -> dict[str, object]:
    return {
        "id": f"m{i:04d}",
        "direction": "in",
        "peer": "moscow",
        "seq": i + 1,
        "kind": "message",
        "msg_type": "free_text",
        "priority": "routine",
        "created_at_us": 10**15 + i,
        "expires_at_us": None if i % 2 else 2**62 + i,  # NULL in the first row of a statement too
        "in_reply_to": None,
        "body": '{"text": "зв\\u0000"}',
        "signed": bytes([i % 256]) * (i % 7) + b"\x00\xff",
        "signed_hash": "a" * 64,
        "envelope": bytes(range(256)) * (1 + i % 3),
        "author": None if i % 3 else "op",
        "released_by": None,
        "notification": None,
        "noted_at_us": i,
    }


@pytest.mark.parametrize("count", [0, 1, 2, 3, 63, 64, 65, 127, 200])
def test_many_rows_are_written_whole_and_in_order(engine: Engine, count: int) -> None:
    rows = [_row(i) for i in range(count)]
    insert = prepared_insert(messages, *MESSAGE_COLUMNS)
    with engine.begin() as conn:
        insert.executemany(conn, rows)
    with engine.connect() as conn:
        stored = [
            dict(r._mapping)
            for r in conn.execute(
                select(*[messages.c[n] for n in MESSAGE_COLUMNS]).order_by(messages.c.seq)
            )
        ]
    assert [
        {k: (bytes(v) if isinstance(v, memoryview) else v) for k, v in r.items()} for r in stored
    ] == rows


@pytest.mark.parametrize("seqs", [(1, 2, 2, 3), (1, 2, 3, 4, 5, 6, 1), (1, 2, 3, 4, 5, 6, 7, 5)])
def test_a_conflicting_row_fails_the_whole_write(engine: Engine, seqs: tuple[int, ...]) -> None:
    """In one statement, or in a later statement of several (one pipeline on PostgreSQL)."""
    insert = prepared_insert(inbound_gaps, "peer", "seq", "noticed_at_us")
    rows = [{"peer": "moscow", "seq": s, "noticed_at_us": 1} for s in seqs]
    with pytest.raises(IntegrityError), engine.begin() as conn:
        insert.executemany(conn, rows)
    with engine.connect() as conn:
        assert conn.execute(select(inbound_gaps)).all() == []


def test_a_missing_column_is_an_argument_error(engine: Engine) -> None:
    insert = PreparedInsert(inbound_gaps, ("peer", "seq", "noticed_at_us"))
    with pytest.raises(ArgumentError), engine.begin() as conn:
        insert.executemany(conn, [{"peer": "moscow", "seq": 1}, {"peer": "moscow", "seq": 2}])
