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
    once the store holds it durably (the transcript's frontier, a peer's keys: decision 17)."""
    conn.info.setdefault(_AFTER_COMMIT, []).append(action)


class Store:
    """Writes go through ``write()`` (one serialized path); reads use a separate engine."""

    # Every store opened in this process, so that the CLI can close what a command opened: a
    # PostgreSQL connection left for the garbage collector holds a server session until then.
    _opened: ClassVar[weakref.WeakSet[Store]] = weakref.WeakSet()

    def __init__(self, engine: Engine, read_engine: Engine | None = None) -> None:
        self.engine = engine
        self.read_engine = read_engine or engine
        # The main thread (a node's event loop, a CLI command) keeps its writer connection
        # between transactions: taking one from the pool and giving it back cost more than the
        # transaction's own BEGIN, and three write transactions are on the path of every
        # message. Other threads take one from the pool for each transaction, so that none
        # holds a connection while idle (a PostgreSQL pool has a few).
        self._kept: Connection | None = None
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
            with self._writer() as conn, conn.begin():
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

    @contextmanager
    def _writer(self) -> Iterator[Connection]:
        """The main thread's kept connection (a new one if it has none, or lost it); in any
        other thread, one from the pool, given back after the transaction."""
        if threading.current_thread() is not threading.main_thread():
            with self.engine.connect() as pooled:
                yield pooled
            return
        conn = self._kept
        if conn is None or conn.closed or conn.invalidated:
            conn = self._kept = self.engine.connect()
        elif conn.in_transaction():
            # Another write transaction of this thread is open: a second one would wait for
            # the first's lock until the busy timeout (it did so with pooled connections).
            raise StorageError("a write transaction is already open in this thread")
        yield conn

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
        if self._kept is not None:
            self._kept.close()
            self._kept = None
        self.engine.dispose()
        self.read_engine.dispose()
