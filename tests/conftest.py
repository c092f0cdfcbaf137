"""The store engine the tests run on (DESIGN decision 10: the same tests on both engines).

By default every store a test makes is a SQLite file in its tmp_path. With
``HOTLINE_TEST_STORE=postgresql://USER@HOST:PORT/DB`` (``make test-pg`` sets it from
scripts/setup-postgres.sh), every node a test creates with ``NodeHome.init`` (in-process, through
the CLI's ``init``, or for the node processes the integration fixtures start, which read the URL
from node.toml) and every store made through the ``store_url`` fixture gets its own fresh
PostgreSQL database on that server, copied from a migrated template and dropped after the test.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from hotline.node.home import NodeHome
from hotline.store.db import create_store_engine, migrate, normalize_url, sqlite_url

#: The switch: a PostgreSQL server URL (any database on it; the tests make their own).
TEST_STORE_ENV = "HOTLINE_TEST_STORE"


def on_postgresql() -> bool:
    return os.environ.get(TEST_STORE_ENV, "").startswith("postgres")


#: Marks a test that is about SQLite itself; it is skipped when the suite runs on PostgreSQL.
sqlite_only = pytest.mark.skipif(on_postgresql(), reason="about the SQLite file itself")


def pytest_configure(config: pytest.Config) -> None:
    if on_postgresql():
        # A store a test drops without closing (a NodeHome left to the garbage collector) closes
        # its connections then; psycopg says so with a ResourceWarning where sqlite3 says nothing.
        # The suite treats warnings as errors; this one is the same leak on both engines.
        config.addinivalue_line(
            "filterwarnings", "ignore:.*was deleted while still open:ResourceWarning"
        )
        # The same for what the garbage collector finds after the last test.
        warnings.filterwarnings(
            "ignore", message=".*was deleted while still open", category=ResourceWarning
        )


class PgDatabases:
    """Fresh databases on one server: ``CREATE DATABASE ... TEMPLATE`` a migrated template (a
    file copy, ~tens of ms, instead of running every migration per store)."""

    def __init__(self, server_url: str) -> None:
        self.server = normalize_url(server_url)
        self.admin = create_engine(self.server, isolation_level="AUTOCOMMIT")
        self.prefix = f"hotline_test_{os.getpid()}"
        self.template = f"{self.prefix}_template"
        self.made: list[str] = []
        self.kept: list[str] = []
        with self.admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {self.template}"))
            conn.execute(text(f"CREATE DATABASE {self.template}"))
        engine = create_store_engine(self.url(self.template))
        migrate(engine)
        engine.dispose()

    def url(self, name: str) -> str:
        return self.admin.url.set(database=name).render_as_string(hide_password=False)

    def new(self, *, for_session: bool = False) -> str:
        """A fresh database, dropped after the test (or after the session: module fixtures)."""
        name = f"{self.prefix}_{uuid.uuid4().hex[:16]}"
        with self.admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name} TEMPLATE {self.template}"))
        (self.kept if for_session else self.made).append(name)
        return self.url(name)

    def drop_made(self) -> None:
        # WITH (FORCE): a node process killed with SIGKILL may leave a session behind a moment.
        with self.admin.connect() as conn:
            for name in self.made:
                conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        self.made.clear()

    def close(self) -> None:
        self.made += self.kept
        self.drop_made()
        with self.admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {self.template} WITH (FORCE)"))
        self.admin.dispose()


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[PgDatabases | None]:
    if not on_postgresql():
        yield None
        return
    dbs = PgDatabases(os.environ[TEST_STORE_ENV])
    yield dbs
    dbs.close()


@pytest.fixture(autouse=True)
def _stores_on_the_test_engine(
    pg_databases: PgDatabases | None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    if pg_databases is None:
        yield
        return
    original = NodeHome.init.__func__  # type: ignore[attr-defined]

    def init(cls: type[NodeHome], directory: Path, **kwargs: Any) -> NodeHome:
        kwargs["store_url"] = kwargs.get("store_url") or pg_databases.new()
        return original(cls, directory, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(NodeHome, "init", classmethod(init))
    yield
    pg_databases.drop_made()


@pytest.fixture
def store_url(pg_databases: PgDatabases | None) -> Callable[[Path], str]:
    """A new store's URL: a SQLite file at the path given, or a fresh PostgreSQL database (one
    per path: asking again for the same path reopens the same store)."""
    made: dict[Path, str] = {}

    def make(path: Path) -> str:
        if pg_databases is None:
            return sqlite_url(path)
        if path not in made:
            made[path] = pg_databases.new()
        return made[path]

    return make
