"""Opening the store: engine, durability settings, migrations.

SQLite is the embedded default: WAL journal, ``synchronous=FULL`` (a commit is on disk before we
report anything, DESIGN decision 4), and a busy timeout so that the CLI and a running node can
both write.

A PostgreSQL URL (``postgresql+psycopg://USER@HOST:PORT/DB``; ``postgresql://`` means the same)
gives the same schema and the same semantics on PostgreSQL through psycopg 3:

- Durability: every session sets ``synchronous_commit=on``, whatever the server's default, so a
  commit is flushed to the server's WAL before we report anything.
- One writer at a time, as SQLite's ``BEGIN IMMEDIATE`` gives: every write transaction first takes
  a transaction-scoped advisory lock (``pg_advisory_xact_lock``) that names the store's write
  path. hotline's writers read then write (the next sequence number is ``max(seq) + 1``, a gap is
  what lies between the highest received and the new one, the transcript's frontier); they were
  written for a single-writer store. Row locks would have to be found and kept right in every such
  path, present and future; SERIALIZABLE would make any write fail with a serialization error
  and need every caller to be safe to re-run (some sign, some answer a peer). The lock keeps the
  one rule every path already relies on, for one round trip per transaction, and write
  throughput is what one writer gets on SQLite too (docs/benchmarks.md). Under the lock, a
  READ COMMITTED statement sees every earlier writer's commit.
- Readers: ``REPEATABLE READ, READ ONLY`` transactions, one snapshot per transaction (as a SQLite
  read transaction in WAL mode), never waiting for the writer.
- A writer waits at most ``lock_timeout`` for the write lock (SQLite's busy timeout).
"""

from __future__ import annotations

import logging
import sqlite3
import time
import weakref
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from hotline.errors import ErrorCode, StorageError

log = logging.getLogger(__name__)

#: How long a writer waits for another process's write transaction before failing.
SQLITE_BUSY_TIMEOUT_MS = 10_000


#: The advisory lock every PostgreSQL write transaction holds (any 64-bit constant no other part
#: of hotline uses): the store's one write path, as SQLite's write lock.
PG_WRITE_LOCK = 0x686F746C696E6500  # "hotline" + 0x00
#: The session-level advisory lock the active replica of a node holds (hotline.node.replica).
PG_LEADER_LOCK = 0x686F746C696E6502  # "hotline" + 0x02

# Engines whose writes are fenced: the backend pid of the session that must hold the leader lock.
_fences: weakref.WeakKeyDictionary[Engine, int] = weakref.WeakKeyDictionary()

# A bigint advisory key shows in pg_locks as classid (high 32 bits), objid (low), objsubid 1.
_FENCED_BEGIN = (
    "SELECT pg_advisory_xact_lock(%(write)s), EXISTS (SELECT 1 FROM pg_locks "
    "WHERE locktype = 'advisory' AND granted AND pid = %(pid)s "
    "AND classid = %(hi)s::oid AND objid = %(lo)s::oid AND objsubid = 1)"
)
_FENCE_KEYS = {
    "write": PG_WRITE_LOCK,
    "hi": PG_LEADER_LOCK >> 32,
    "lo": PG_LEADER_LOCK & 0xFFFFFFFF,
}


def sqlite_url(path: Path) -> str:
    return f"sqlite+pysqlite:///{path}"


def is_postgresql(url: str) -> bool:
    return url.startswith(("postgresql", "postgres:"))


def normalize_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` name the psycopg 3 driver (SQLAlchemy would pick
    psycopg2, which hotline does not install)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


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


def _begin_on_driver(conn: Any, statement: str) -> None:
    """``statement`` on the driver's connection: through ``exec_driver_sql`` a BEGIN cost
    three times the rest of an empty transaction (20 us against 10, on every message's three
    write transactions). A driver error becomes SQLAlchemy's, as ``exec_driver_sql`` makes it
    (``Store`` answers those with ``StorageError``)."""
    try:
        conn.connection.driver_connection.execute(statement)
    except sqlite3.Error as e:
        raise DBAPIError.instance(statement, (), e, sqlite3.Error) from e


def _on_sqlite_begin_write(conn: Any) -> None:
    # Every write transaction takes the write lock up front: a read-then-write transaction
    # (allocating a sequence number) must never fail half-way with SQLITE_BUSY on stale data.
    _begin_on_driver(conn, "BEGIN IMMEDIATE")


def _on_sqlite_begin_read(conn: Any) -> None:
    _begin_on_driver(conn, "BEGIN")


def _on_pg_begin_write(conn: Any) -> None:
    leader_pid = _fences.get(conn.engine)
    if leader_pid is None:
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_WRITE_LOCK})")
        return
    # An active replica: under the write lock, its leader session must still hold the leader
    # lock, or a standby may already have taken over (one round trip, as without the fence).
    row = conn.exec_driver_sql(_FENCED_BEGIN, {**_FENCE_KEYS, "pid": leader_pid}).first()
    if row is None or not row[1]:
        raise StorageError(
            "this process no longer holds the store's leader lock; another replica is active",
            code=ErrorCode.STANDBY,
        )


def fence_writes(engine: Engine, leader_pid: int) -> None:
    """From now on, a write transaction on ``engine`` commits only while the PostgreSQL session
    ``leader_pid`` holds the leader lock (an active replica, hotline.node.replica)."""
    _fences[engine] = leader_pid


def _pg_options() -> str:
    # Session settings sent with the connection (no extra round trip). synchronous_commit=on is
    # DESIGN decision 4 on PostgreSQL; lock_timeout bounds the wait for the write lock.
    return f"-c synchronous_commit=on -c lock_timeout={PG_LOCK_TIMEOUT_MS} -c timezone=UTC"


#: How long a PostgreSQL writer waits for the store's write lock before failing (as SQLite's
#: busy timeout).
PG_LOCK_TIMEOUT_MS = SQLITE_BUSY_TIMEOUT_MS


def create_store_engine(url: str, *, writer: bool = True) -> Engine:
    """An engine for ``url`` with hotline's durability settings applied.

    A writer engine starts every SQLite transaction with ``BEGIN IMMEDIATE`` (on PostgreSQL: takes
    the store's write lock); a reader engine uses snapshot transactions that never wait for it.
    """
    url = normalize_url(url)
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"check_same_thread": False})
            event.listen(engine, "connect", _on_sqlite_connect)
            event.listen(
                engine, "begin", _on_sqlite_begin_write if writer else _on_sqlite_begin_read
            )
        elif url.startswith("postgresql+psycopg"):
            engine = create_engine(
                url,
                # No ping per checkout (a round trip per transaction): a connection the server
                # dropped fails one transaction, is discarded, and the next one reconnects.
                # A node's writes are serialized by the write lock: a few connections suffice.
                pool_size=4 if writer else 8,
                max_overflow=4 if writer else 8,
                connect_args={"options": _pg_options(), "connect_timeout": 10},
                isolation_level="READ COMMITTED" if writer else "REPEATABLE READ",
            )
            if writer:
                event.listen(engine, "begin", _on_pg_begin_write)
            else:
                engine = engine.execution_options(postgresql_readonly=True)
        else:
            raise ValueError("hotline stores are sqlite+pysqlite:// or postgresql+psycopg:// URLs")
    except (SQLAlchemyError, ValueError, ImportError) as e:
        raise StorageError(f"cannot open store {_redacted(url)!r}: {e}") from e
    return engine


def _redacted(url: str) -> str:
    """``url`` without a password, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (SQLAlchemyError, ValueError):
        return "<unparsable store URL>"


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
