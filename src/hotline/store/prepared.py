"""Prepared statements for the hot path: SQL written once in SQLAlchemy Core, compiled once per
dialect, run on the DBAPI cursor of the caller's connection, inside the caller's transaction.

Why: ``Connection.execute`` costs 40 to 60 µs per statement on this machine (building the
statement, its cache key, parameter and result processing) against 1 to 3 µs for the driver
itself, and a message takes a dozen statements on each side of the link. The SQL stays portable:
each dialect compiles the Core statement in its own syntax and parameter style.

Only for statements over columns that need no type processing (integers, strings, bytes): the
parameters go to the driver as given and rows come back as plain tuples. Driver errors are
raised as SQLAlchemy's own exceptions (``IntegrityError`` ...), as ``Connection.execute`` would.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Table, bindparam, exc, insert, text
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.compiler import Compiled

_Params = Mapping[str, Any]


class _Form:
    """A statement compiled for one dialect: SQL text, parameter order and constant binds."""

    __slots__ = ("constants", "names", "required", "sql")

    def __init__(self, compiled: Compiled, positional: bool) -> None:
        self.sql = compiled.string
        binds = compiled.bind_names  # type: ignore[attr-defined]
        # Constants written into the statement (``column == "in"``) travel as parameters too.
        self.constants = {name: bp.value for bp, name in binds.items() if not bp.required}
        self.required = frozenset(name for bp, name in binds.items() if bp.required)
        self.names: tuple[str, ...] | None = (
            tuple(compiled.positiontup) if positional else None  # type: ignore[attr-defined]
        )

    def args(self, params: _Params) -> Sequence[Any] | Mapping[str, Any]:
        if not self.required <= params.keys():
            missing = sorted(self.required - params.keys())
            raise exc.ArgumentError(f"missing parameters {missing} for: {self.sql}")
        merged = {**self.constants, **params} if self.constants else params
        if self.names is None:
            return merged
        return [merged[n] for n in self.names]


class Prepared:
    """One Core statement, compiled on first use for each dialect it meets."""

    __slots__ = ("_forms", "statement")

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._forms: dict[tuple[str, str, str], _Form] = {}

    def _form(self, conn: Connection) -> _Form:
        dialect = conn.dialect
        key = (dialect.name, dialect.driver, dialect.paramstyle)
        form = self._forms.get(key)
        if form is None:
            compiled = self.statement.compile(dialect=dialect)  # type: ignore[attr-defined]
            form = self._forms[key] = _Form(compiled, dialect.positional)
        return form

    @staticmethod
    def _cursor(conn: Connection) -> Any:
        if not conn.in_transaction():
            conn.begin()  # as SQLAlchemy's autobegin would: one snapshot for what follows
        return conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]

    def _run(self, conn: Connection, params: _Params, many: Iterable[_Params] | None) -> Any:
        form = self._form(conn)
        cursor = self._cursor(conn)
        try:
            if many is None:
                cursor.execute(form.sql, form.args(params))
            else:
                cursor.executemany(form.sql, [form.args(p) for p in many])
        except conn.dialect.loaded_dbapi.Error as e:
            cursor.close()
            raise exc.DBAPIError.instance(
                form.sql,
                params,
                e,
                conn.dialect.loaded_dbapi.Error,
                dialect=conn.dialect,
            ) from e
        return cursor

    def sql_of(self, conn: Connection) -> str:
        """The statement's SQL text for ``conn``'s dialect (for messages)."""
        return self._form(conn).sql

    def execute(self, conn: Connection, params: _Params | None = None) -> int:
        """Run a write; return the number of rows it touched."""
        cursor = self._run(conn, params or {}, None)
        count = int(cursor.rowcount)
        cursor.close()
        return count

    def executemany(self, conn: Connection, rows: Sequence[_Params]) -> None:
        """Run a write once per parameter set (one driver call)."""
        if rows:
            self._run(conn, {}, rows).close()

    def all(self, conn: Connection, params: _Params | None = None) -> list[tuple[Any, ...]]:
        cursor = self._run(conn, params or {}, None)
        rows = cursor.fetchall()
        cursor.close()
        return [tuple(r) for r in rows]

    def first(self, conn: Connection, params: _Params | None = None) -> tuple[Any, ...] | None:
        cursor = self._run(conn, params or {}, None)
        row = cursor.fetchone()
        cursor.close()
        return None if row is None else tuple(row)

    def scalar(self, conn: Connection, params: _Params | None = None) -> Any:
        row = self.first(conn, params)
        return None if row is None else row[0]


class PreparedInsert(Prepared):
    """``INSERT INTO table (columns...) VALUES (:column, ...)``, and for many rows the same with
    several rows per statement.

    ``executemany`` sends rows in statements of 64, 32, ..., 1 rows (the binary digits of the
    count: at most seven statements for a batch of 127, a handful of forms per table). One
    statement per row costs PostgreSQL a bind, an execution and its result per row even when
    the driver pipelines them (about twice the server's work, measured: docs/benchmarks.md);
    SQLite takes either at about the same cost."""

    __slots__ = ("_by_count", "columns", "table")

    #: Rows per statement at most (64 rows of 18 columns: 1,152 parameters, far below both
    #: engines' limits).
    MOST = 64

    def __init__(self, table: Table, columns: Sequence[str]) -> None:
        # Inline: no RETURNING of the generated key, which nothing reads here.
        super().__init__(insert(table).inline().values({n: bindparam(n) for n in columns}))
        self.table = table
        self.columns = tuple(columns)
        self._by_count: dict[int, Prepared] = {1: self}

    def _for_count(self, count: int) -> Prepared:
        found = self._by_count.get(count)
        if found is None:
            rows: list[dict[str, Any]] = [
                {n: bindparam(f"{n}_{i}") for n in self.columns} for i in range(count)
            ]
            found = self._by_count[count] = Prepared(insert(self.table).values(rows))
        return found

    def executemany(self, conn: Connection, rows: Sequence[_Params]) -> None:
        """Insert ``rows`` (each with every column named) in as few statements as the
        sizes allow, in order; on PostgreSQL the statements go in one pipeline (one round trip
        for all of them)."""
        statements: list[tuple[Prepared, _Params]] = []
        start = 0
        while start < len(rows):
            count = min(self.MOST, 1 << (len(rows) - start).bit_length() - 1)
            if count == 1:
                statements.append((self, rows[start]))
            else:
                try:
                    params = {
                        f"{n}_{i}": row[n]
                        for i, row in enumerate(rows[start : start + count])
                        for n in self.columns
                    }
                except KeyError as e:
                    raise exc.ArgumentError(
                        f"missing parameter {e} for: {self.sql_of(conn)}"
                    ) from e
                statements.append((self._for_count(count), params))
            start += count
        if len(statements) == 1:
            statements[0][0].execute(conn, statements[0][1])
        elif statements:
            _run_pipelined(conn, statements)


def _run_pipelined(conn: Connection, statements: Sequence[tuple[Prepared, _Params]]) -> None:
    """Run writes in order. psycopg sends them in one pipeline and waits once (errors come back
    at the end, as SQLAlchemy's exceptions); SQLite runs them one after the other in process."""
    forms = [(p._form(conn), params) for p, params in statements]
    cursor = Prepared._cursor(conn)
    raw = conn.connection.dbapi_connection
    pipeline = getattr(raw, "pipeline", None) if conn.dialect.name == "postgresql" else None
    sql: str = ""
    args: _Params = {}
    try:
        if pipeline is None:
            for form, params in forms:
                sql, args = form.sql, params
                cursor.execute(form.sql, form.args(params))
        else:
            with pipeline():
                for form, params in forms:
                    sql, args = form.sql, params
                    cursor.execute(form.sql, form.args(params))
    except conn.dialect.loaded_dbapi.Error as e:
        raise exc.DBAPIError.instance(
            sql, args, e, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect
        ) from e
    finally:
        cursor.close()


def prepared_insert(table: Table, *columns: str) -> PreparedInsert:
    """``INSERT INTO table (columns...) VALUES (:column, ...)``: every column named is required
    (Python-side column defaults do not apply here); ``executemany`` writes several rows per
    statement."""
    return PreparedInsert(table, columns)


class InList:
    """``... IN (:p0, ..., :pk)`` for a varying number of values: one prepared form per count,
    so that no statement is built per call (counts above ``most`` are split by the caller)."""

    __slots__ = ("_by_count", "_make", "most")

    def __init__(self, make: Any, most: int = 64) -> None:
        self._make = make  # (list of bind parameters) -> Core statement
        self._by_count: dict[int, Prepared] = {}
        self.most = most

    def for_count(self, count: int) -> Prepared:
        prepared = self._by_count.get(count)
        if prepared is None:
            binds: list[Any] = [bindparam(f"p{i}") for i in range(count)]
            prepared = self._by_count[count] = Prepared(self._make(binds))
        return prepared

    def chunks(self, values: Sequence[Any]) -> Iterable[tuple[Prepared, dict[str, Any]]]:
        """(statement, parameters) for each slice of at most ``most`` values."""
        for start in range(0, len(values), self.most):
            part = values[start : start + self.most]
            yield self.for_count(len(part)), {f"p{i}": v for i, v in enumerate(part)}


_SAVEPOINT = Prepared(text("SAVEPOINT hotline_item"))
_RELEASE = Prepared(text("RELEASE SAVEPOINT hotline_item"))
_ROLLBACK_TO = Prepared(text("ROLLBACK TO SAVEPOINT hotline_item"))


@contextmanager
def savepoint(conn: Connection) -> Iterator[None]:
    """A savepoint around one item of a batch: its writes are undone if it raises, the rest of
    the transaction stands. Plain SQL (both engines have it); ``Connection.begin_nested`` does
    the same with bookkeeping that cost about as much as the item's own statements."""
    _SAVEPOINT.execute(conn)
    try:
        yield
    except BaseException:
        _ROLLBACK_TO.execute(conn)
        _RELEASE.execute(conn)
        raise
    _RELEASE.execute(conn)


__all__ = ["InList", "Prepared", "PreparedInsert", "prepared_insert", "savepoint"]
