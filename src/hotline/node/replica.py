"""Active and standby replicas: node processes of one party sharing one PostgreSQL store.

Exactly one of them is **active**: the one whose dedicated database session holds the store's
leader lock, a session-level PostgreSQL advisory lock. The others are **standbys**: they answer
every request with 503 ``standby`` (a load balancer's health check sees the same on /healthz)
and try the lock again every ``poll_s``. Why an advisory lock and not a lease row with an expiry:
the lock is released by the server the moment the holder's session ends (a process killed with
SIGKILL closes its socket at once; a vanished host is noticed by TCP keepalives within
``KEEPALIVE_*``), it needs no clock agreement between hosts, and there is no expiry to tune
against pauses. A lease row would release only after its expiry however the holder died.

A lock is only half of it: a process that lost its session (a network cut between it and the
database) may not know yet. Two guards keep it from acting as active:

1. **Fencing in the store**: once active, every write transaction of the node checks, under the
   store's write lock, that its own leader session still holds the leader lock
   (``hotline.store.db.fence_writes``); if not, the write fails and nothing is committed. Writes
   are serialized, so the new active's first write comes after the old one's last.
2. **Exit on loss**: a watchdog pings the leader session every ``poll_s``; when it fails the
   process exits at once (code 75, EX_TEMPFAIL), so that its supervisor restarts it as a standby.

On becoming active a process starts the node exactly as a fresh start does: everything it
serves is read from the store, which holds the old active's every commit.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any

from sqlalchemy import BigInteger, Column, Integer, Table, Text, delete, insert, make_url, select

from hotline.errors import ErrorCode, StorageError
from hotline.store import Store
from hotline.store.db import PG_LEADER_LOCK, normalize_url
from hotline.store.schema import metadata

log = logging.getLogger("hotline.replica")

#: How often a standby tries the leader lock, and how often the active checks its session.
POLL_S = 0.5
#: TCP keepalives of the leader session: a dead peer host is noticed in about
#: IDLE + INTERVAL * COUNT seconds, by the server (freeing the lock) and by us.
KEEPALIVE_IDLE_S = 5
KEEPALIVE_INTERVAL_S = 2
KEEPALIVE_COUNT = 3
#: Exit status of a process that lost the leader lock while active (EX_TEMPFAIL).
EXIT_LOST_LEADERSHIP = 75

#: Where the active process answers (one row, id 1), written when it becomes active, so that a
#: CLI command that wakes the node reaches it rather than the endpoint its own directory names,
#: which may be a dead or standby replica.
active_replica = Table(
    "active_replica",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("url", Text, nullable=False),
    Column("session_pid", BigInteger, nullable=False),
    Column("since_us", BigInteger, nullable=False),
)


def record_active(store: Store, url: str, session_pid: int, now_us: int) -> None:
    """This process is the active one and answers at ``url`` (in a fenced write: a process that
    lost the lock cannot claim it)."""
    with store.write() as conn:
        conn.execute(delete(active_replica))
        conn.execute(
            insert(active_replica).values(id=1, url=url, session_pid=session_pid, since_us=now_us)
        )
    log.info("recorded %s as the active replica's address", url)


def active_url(store: Store) -> str | None:
    """Where the process that last became active answers, or None (none recorded: SQLite, or
    no replica has started since)."""
    with store.read() as conn:
        url = conn.execute(select(active_replica.c.url).where(active_replica.c.id == 1)).scalar()
    return None if url is None else str(url)


def _conninfo(store_url: str) -> str:
    url = make_url(normalize_url(store_url)).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class Leadership:
    """The leader lock of one PostgreSQL store, held by a dedicated session."""

    def __init__(self, store_url: str, *, poll_s: float = POLL_S) -> None:
        self._conninfo = _conninfo(store_url)
        self.poll_s = poll_s
        self._conn: Any = None
        self.session_pid: int | None = None
        self._stop = threading.Event()

    def _connect(self) -> Any:
        import psycopg

        keepalives = (
            f"-c tcp_keepalives_idle={KEEPALIVE_IDLE_S} "
            f"-c tcp_keepalives_interval={KEEPALIVE_INTERVAL_S} "
            f"-c tcp_keepalives_count={KEEPALIVE_COUNT}"
        )
        return psycopg.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=10,
            keepalives=1,
            keepalives_idle=KEEPALIVE_IDLE_S,
            keepalives_interval=KEEPALIVE_INTERVAL_S,
            keepalives_count=KEEPALIVE_COUNT,
            options=keepalives,
        )

    def try_acquire(self) -> bool:
        """One attempt at the lock; True once this process is the active replica."""
        import psycopg

        try:
            if self._conn is None or self._conn.closed:
                self._conn = self._connect()
            row = self._conn.execute(
                "SELECT pg_try_advisory_lock(%s), pg_backend_pid()", (PG_LEADER_LOCK,)
            ).fetchone()
        except psycopg.Error as e:
            log.warning("standby: cannot reach the store to try the leader lock: %s", e)
            self._discard()
            return False
        if row is None or not row[0]:
            return False
        self.session_pid = int(row[1])
        return True

    def wait(self, stop: threading.Event | None = None) -> bool:
        """Try until the lock is ours (True), or ``stop`` is set (False)."""
        while not (stop is not None and stop.is_set()):
            if self.try_acquire():
                return True
            time.sleep(self.poll_s)
        return False

    def holds(self) -> bool:
        """True while the leader session is alive (and so still holds the lock)."""
        import psycopg

        if self._conn is None or self._conn.closed or self.session_pid is None:
            return False
        try:
            self._conn.execute("SELECT 1").fetchone()
        except psycopg.Error:
            return False
        return True

    def watch(self) -> threading.Thread:
        """Start the watchdog: exit the process at once when the leader session is lost."""

        def run() -> None:
            while not self._stop.wait(self.poll_s):
                if not self.holds():
                    log.critical(
                        "lost the store's leader lock (session %s ended): exiting so that "
                        "this process restarts as a standby",
                        self.session_pid,
                    )
                    logging.shutdown()
                    os._exit(EXIT_LOST_LEADERSHIP)

        thread = threading.Thread(target=run, name="leader-watchdog", daemon=True)
        thread.start()
        return thread

    def _discard(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # closing a broken session: nothing else to do
                log.debug("closing the leader session failed", exc_info=True)
        self._conn = None
        self.session_pid = None

    def release(self) -> None:
        """Stop watching and end the leader session (the lock goes with it)."""
        self._stop.set()
        self._discard()


def standby_app(name: str) -> Any:
    """The whole HTTP surface of a standby: 503 and the ``standby`` error for every request
    (peers fail over to another endpoint; operators see which process is active), and
    ``/healthz`` says ``standby`` with 503 so that a load balancer routes to the active one."""
    error = StorageError(
        "this replica is a standby; another process of this node is active",
        code=ErrorCode.STANDBY,
    )
    refused = json.dumps({"error": error.to_dict()}).encode()
    health = json.dumps({"name": name, "status": "standby"}).encode()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        body = health if scope.get("path") == "/healthz" else refused
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [(b"content-type", b"application/json"), (b"retry-after", b"1")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


def serve_standby(
    leadership: Leadership, *, name: str, host: str, port: int, log_level: str
) -> bool:
    """Serve as a standby on ``host:port`` until the leader lock is ours (True) or the process is
    told to stop (False). The port is free again when this returns."""
    import uvicorn

    from hotline.node.limits import bounded_server

    config = uvicorn.Config(
        standby_app(name),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        loop="uvloop",
        http="httptools",
    )
    server = bounded_server(config)
    stop = threading.Event()

    def wait() -> None:
        if leadership.wait(stop):
            server.should_exit = True

    waiter = threading.Thread(target=wait, name="standby", daemon=True)
    log.warning("%s: standby; another process of this node holds the store's leader lock", name)
    waiter.start()
    server.run()
    stop.set()
    waiter.join()
    return leadership.session_pid is not None


__all__ = [
    "EXIT_LOST_LEADERSHIP",
    "Leadership",
    "active_replica",
    "active_url",
    "record_active",
    "serve_standby",
    "standby_app",
]
