"""Opening the store: engine, durability settings, migrations.

SQLite is the embedded default: WAL journal, ``synchronous=FULL`` (a commit is on disk before we
report anything, DESIGN decision 4), and a busy timeout so that the CLI and a running node can
both write. A PostgreSQL URL gives the same schema on PostgreSQL.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError

from hotline.errors import StorageError

log = logging.getLogger(__name__)

#: How long a writer waits for another process's write transaction before failing.
SQLITE_BUSY_TIMEOUT_MS = 10_000


def sqlite_url(path: Path) -> str:
    return f"sqlite+pysqlite:///{path}"


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy issue BEGIN itself (pysqlite's own transaction handling is off), so that
    # ``begin_immediate`` below can take the write lock at the start of a transaction.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _on_sqlite_begin_write(conn: Any) -> None:
    # Every write transaction takes the write lock up front: a read-then-write transaction
    # (allocating a sequence number) must never fail half-way with SQLITE_BUSY on stale data.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _on_sqlite_begin_read(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN")


def create_store_engine(url: str, *, writer: bool = True) -> Engine:
    """An engine for ``url`` with hotline's durability settings applied.

    A writer engine starts every SQLite transaction with ``BEGIN IMMEDIATE``; a reader engine
    uses plain deferred transactions so readers never wait for the write lock.
    """
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"check_same_thread": False})
            event.listen(engine, "connect", _on_sqlite_connect)
            event.listen(
                engine, "begin", _on_sqlite_begin_write if writer else _on_sqlite_begin_read
            )
        else:
            engine = create_engine(url, pool_pre_ping=True)
    except (SQLAlchemyError, ValueError) as e:
        raise StorageError(f"cannot open store {url!r}: {e}") from e
    return engine


def _alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "hotline.store:migrations")
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the store's schema up to the newest migration (all heads)."""
    started = time.monotonic()
    try:
        command.upgrade(_alembic_config(engine), "heads")
    except SQLAlchemyError as e:
        raise StorageError(f"migrating the store failed: {e}") from e
    log.debug("store migrated in %.1f ms", (time.monotonic() - started) * 1000)


def is_current(engine: Engine) -> bool:
    """True when the store is at every migration head (nothing to migrate)."""
    script = ScriptDirectory.from_config(_alembic_config(engine))
    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    return current == set(script.get_heads())
