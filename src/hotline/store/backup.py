"""Backing up and restoring a node's store, on either engine.

A backup is one file: a SQLite database made with SQLite's online backup API (consistent while the
node runs and writes), or a ``pg_dump`` archive in its custom format (one snapshot, taken while
the node runs). ``restore`` recognises which by the file's first bytes and refuses a backup of
the other engine. The private keys are not in it: they are kept apart (docs/operations.md).

What a restore cannot give back is everything committed after the backup; :func:`summarize`
says where the backup stands (transcript size, highest sequence number each way per peer) so
that an operator can compare it with what the peers hold (docs/operations.md, "Restore").
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, make_url, select

from hotline.errors import ConfigError, InputError, StorageError
from hotline.store._store import Store
from hotline.store.db import is_postgresql, normalize_url
from hotline.store.schema import messages

SQLITE_MAGIC = b"SQLite format 3\x00"
PG_DUMP_MAGIC = b"PGDMP"
#: How long pg_dump or pg_restore may run before we give up on it.
PG_TOOL_TIMEOUT_S = 3600


@dataclass(frozen=True, slots=True)
class Summary:
    """Where a store stands: what a backup holds, or what a restored node starts from."""

    transcript_size: int
    #: peer -> (highest sequence number we sent it, highest we received from it)
    peers: dict[str, tuple[int, int]]

    def to_dict(self) -> dict[str, object]:
        return {
            "transcript_size": self.transcript_size,
            "peers": {p: {"out_seq": o, "in_seq": i} for p, (o, i) in sorted(self.peers.items())},
        }


def summarize(store: Store) -> Summary:
    from hotline import transcript

    with store.read() as conn:
        size = transcript.size(conn)
        rows = conn.execute(
            select(messages.c.peer, messages.c.direction, func.max(messages.c.seq)).group_by(
                messages.c.peer, messages.c.direction
            )
        )
        peers: dict[str, tuple[int, int]] = {}
        for peer, direction, seq in rows:
            out, into = peers.get(peer, (0, 0))
            peers[peer] = (int(seq), into) if direction == "out" else (out, int(seq))
    return Summary(transcript_size=size, peers=peers)


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database:
        raise ConfigError(f"store URL {url!r} names no SQLite file")
    return Path(database)


def _pg_conninfo(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URL for the command-line tools, and the environment carrying its password (not
    on the command line, where other users of the machine could read it)."""
    parsed = make_url(normalize_url(url))
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    plain = parsed.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _run_tool(args: list[str], env: dict[str, str], what: str) -> None:
    tool = shutil.which(args[0])
    if tool is None:
        raise ConfigError(
            f"{args[0]} is not installed: it comes with postgresql-client-15 "
            "(scripts/setup-postgres.sh installs it)"
        )
    try:
        result = subprocess.run(
            [tool, *args[1:]],
            env=env,
            capture_output=True,
            text=True,
            timeout=PG_TOOL_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise StorageError(f"{what}: {args[0]} ran longer than {PG_TOOL_TIMEOUT_S} s") from e
    if result.returncode != 0:
        raise StorageError(f"{what}: {args[0]} failed: {result.stderr.strip()[-1500:]}")


def backup(store_url: str, out: Path) -> None:
    """Write a consistent copy of the store to ``out`` (replaced atomically when complete)."""
    if out.exists() and out.is_dir():
        raise InputError(f"{out} is a directory; give a file name")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        if is_postgresql(store_url):
            conninfo, env = _pg_conninfo(store_url)
            _run_tool(
                ["pg_dump", "--format=custom", "--no-owner", "--file", str(tmp), conninfo],
                env,
                "backup",
            )
        else:
            source = sqlite3.connect(f"file:{_sqlite_path(store_url)}?mode=ro", uri=True)
            target = sqlite3.connect(tmp)
            try:
                # Pages are copied in steps; a commit by the running node restarts the copy, so
                # the result is one consistent state of the store.
                source.backup(target)
            finally:
                target.close()
                source.close()
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except sqlite3.Error as e:
        raise StorageError(f"backup failed: {e}") from e
    finally:
        tmp.unlink(missing_ok=True)


def backup_engine(path: Path) -> str:
    """``sqlite`` or ``postgresql``: which engine a backup file is for (by its first bytes)."""
    try:
        with path.open("rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except OSError as e:
        raise InputError(f"cannot read backup {path}: {e}") from e
    if head == SQLITE_MAGIC:
        return "sqlite"
    if head.startswith(PG_DUMP_MAGIC):
        return "postgresql"
    raise InputError(f"{path} is not a hotline backup (neither SQLite nor pg_dump custom format)")


def _check_sqlite_backup(path: Path) -> None:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        (verdict,) = db.execute("PRAGMA integrity_check").fetchone()
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.Error as e:
        raise InputError(f"{path} is not a readable SQLite database: {e}") from e
    finally:
        db.close()
    if verdict != "ok":
        raise InputError(f"{path} fails SQLite's integrity check: {verdict}")
    if not {"alembic_version", "messages", "transcript_leaves"} <= tables:
        raise InputError(f"{path} is a SQLite database but not a hotline store")


def restore(store_url: str, backup_file: Path) -> Path | None:
    """Replace the store's contents with ``backup_file``. Call with no node process running on
    the store (the CLI checks). For SQLite, the replaced files are kept beside it; their path is
    returned."""
    engine = backup_engine(backup_file)
    if engine != ("postgresql" if is_postgresql(store_url) else "sqlite"):
        raise InputError(f"{backup_file} is a {engine} backup; this node's store is not {engine}")
    if engine == "postgresql":
        conninfo, env = _pg_conninfo(store_url)
        _run_tool(
            [
                "pg_restore",
                "--clean",
                "--if-exists",
                "--no-owner",
                "--single-transaction",
                "--exit-on-error",
                "--dbname",
                conninfo,
                str(backup_file),
            ],
            env,
            "restore",
        )
        return None
    _check_sqlite_backup(backup_file)
    target = _sqlite_path(store_url)
    kept = target.with_name(
        f"{target.name}.before-restore-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    )
    kept.mkdir(parents=True)
    # The old store's WAL must go with it: left beside the restored file, SQLite would replay it.
    for suffix in ("", "-wal", "-shm"):
        old = target.with_name(target.name + suffix)
        if old.exists():
            os.replace(old, kept / old.name)
    tmp = target.with_name(f".{target.name}.restoring")
    source = sqlite3.connect(f"file:{backup_file}?mode=ro", uri=True)
    dest = sqlite3.connect(tmp)
    try:
        source.backup(dest)
    except sqlite3.Error as e:
        raise StorageError(f"restore failed: {e}") from e
    finally:
        dest.close()
        source.close()
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, target)
    return kept


__all__ = ["Summary", "backup", "backup_engine", "restore", "summarize"]
