"""The ``Store``: one engine, explicit write transactions, wrapped errors."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ClassVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from hotline.errors import HotlineError, StorageError
from hotline.store.db import create_store_engine, migrate

#: ``Connection.info`` key of the actions to run once the transaction commits (``after_commit``).
_AFTER_COMMIT = "hotline.after_commit"


def after_commit(conn: Connection, action: Callable[[], None]) -> None:
    """Run ``action`` once the write transaction ``conn`` belongs to has committed (through
    ``Store.write``); never if it rolls back. For what a process may remember of the store only
    once the store holds it durably (the transcript's frontier)."""
    conn.info.setdefault(_AFTER_COMMIT, []).append(action)


class Store:
    """Writes go through ``write()`` (one serialized path); reads use a separate engine."""

    # Every store opened in this process, so that the CLI can close what a command opened: a
    # PostgreSQL connection left for the garbage collector holds a server session until then.
    _opened: ClassVar[weakref.WeakSet[Store]] = weakref.WeakSet()

    def __init__(self, engine: Engine, read_engine: Engine | None = None) -> None:
        self.engine = engine
        self.read_engine = read_engine or engine
        # Each thread keeps its writer connection between transactions: taking one from the
        # pool and giving it back cost more than the transaction's own BEGIN (three write
        # transactions are on the path of every message).
        self._kept = threading.local()
        self._all_kept: weakref.WeakSet[Connection] = weakref.WeakSet()
        Store._opened.add(self)

    @classmethod
    def close_all(cls) -> None:
        """Release every open store's idle connections (a closed store reconnects if used)."""
        for store in list(cls._opened):
            store.close()

    @classmethod
    def open(cls, url: str, *, migrate_schema: bool = True) -> Store:
        engine = create_store_engine(url)
        if migrate_schema:
            migrate(engine)
        return cls(engine, create_store_engine(url, writer=False))

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction: committed (durably) on success, rolled back on any error."""
        try:
            conn = self._writer()
            with conn.begin():
                info = conn.info  # the DBAPI connection's: it outlives this transaction
                info.pop(_AFTER_COMMIT, None)  # left by a transaction not made here
                try:
                    yield conn
                finally:
                    actions: list[Callable[[], None]] = info.pop(_AFTER_COMMIT, [])
        except HotlineError:
            raise
        except SQLAlchemyError as e:
            raise StorageError(f"write failed: {e.__class__.__name__}: {e}") from e
        for action in actions:
            action()

    def _writer(self) -> Connection:
        """This thread's writer connection (a new one if it has none, or lost it)."""
        conn: Connection | None = getattr(self._kept, "conn", None)
        if conn is None or conn.closed or conn.invalidated:
            conn = self._kept.conn = self.engine.connect()
            self._all_kept.add(conn)
        elif conn.in_transaction():
            # Another write transaction of this thread is open: a second one would wait for
            # the first's lock forever (it was so with pooled connections too).
            raise StorageError("a write transaction is already open in this thread")
        return conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        try:
            with self.read_engine.connect() as conn:
                yield conn
        except HotlineError:
            raise
        except SQLAlchemyError as e:
            raise StorageError(f"read failed: {e.__class__.__name__}: {e}") from e

    def close(self) -> None:
        for conn in list(self._all_kept):
            conn.close()
        self._kept = threading.local()
        self.engine.dispose()
        self.read_engine.dispose()
