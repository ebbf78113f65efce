"""Statements run straight on the database driver's cursor, for the engine's hot path.

Every job passes through about twenty of the engine's statements. Through ``Connection.execute`` each one costs
about 12 µs of Python here (a cache key, an execution context, a result object) on top of the driver's 1 to 2 µs,
and several times that while the machine is busy running jobs. A ``Prepared`` statement is compiled once per
dialect by SQLAlchemy and then runs on the DBAPI cursor of the same connection, so in the same transaction, with
the bind and result processors SQLAlchemy gives its columns' types (``TypeEngine.dialect_impl``). A statement
that needs more of SQLAlchemy's execution than that (Python-side column defaults, IN lists given at run time,
escaped parameter names) runs through ``Connection.execute`` instead, with the same results.
"""

from __future__ import annotations

import contextlib
import weakref
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, exc
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Delete, Insert, Select, Update

Params = Mapping[str, Any]
Statement = Select[*tuple[Any, ...]] | Insert | Update | Delete
_GIVEN = object()  # a parameter the caller gives (as opposed to a value written in the statement)


class Rows:
    """What running a statement gave: its rows (each a tuple with the columns as attributes) and its rowcount."""

    __slots__ = ("rowcount", "rows")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self.rows = rows
        self.rowcount = rowcount

    def __iter__(self) -> Iterator[Any]:
        return iter(self.rows)

    def first(self) -> Any | None:
        return self.rows[0] if self.rows else None

    def all(self) -> list[Any]:
        return self.rows

    def scalar_one(self) -> Any:
        if len(self.rows) != 1:
            raise exc.NoResultFound("no row") if not self.rows else exc.MultipleResultsFound("more than one row")
        return self.rows[0][0]


class _Plan:
    """A statement compiled for one dialect: its SQL, how to build its parameters, how to read its rows."""

    def __init__(self, statement: Statement, dialect: Dialect) -> None:
        try:
            compiled: Any = statement.compile(dialect=dialect)
        except exc.SQLAlchemyError as error:
            raise _NotPlain from error
        by_name = {name: bind for bind, name in compiled.bind_names.items()}
        if (
            compiled.insert_prefetch
            or compiled.update_prefetch
            or compiled.escaped_bind_names
            or any(bind.callable is not None or bind.expanding for bind in by_name.values())
        ):
            raise _NotPlain
        self.sql: str = compiled.string
        self.positional = bool(compiled.positional)
        names = list(compiled.positiontup) if self.positional else list(by_name)
        self.binds: list[tuple[str, Any, Callable[[Any], Any] | None]] = []
        for name in names:
            bind = by_name[name]
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if bind.required:
                self.binds.append((name, _GIVEN, processor))
            else:  # a value written in the statement
                self.binds.append((name, bind.value if processor is None else processor(bind.value), None))
        self.row: Any = None
        self.results: list[Callable[[Any], Any] | None] | None = None  # (None: the driver's values as they are)
        if isinstance(statement, Select):
            columns = list(statement.selected_columns)
            keys = [str(column.key) for column in columns]
            if None in (column.key for column in columns) or len(set(keys)) != len(keys):
                raise _NotPlain
            self.row = namedtuple("Row", keys)  # type: ignore[misc]
            results: list[Callable[[Any], Any] | None] = [
                column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
            ]
            self.results = results if any(results) else None

    def args(self, params: Params) -> Any:
        """The driver's parameters for one execution."""
        values = []
        for name, fixed, processor in self.binds:
            if fixed is _GIVEN:
                value = params[name]
                values.append(processor(value) if processor is not None else value)
            else:
                values.append(fixed)
        if self.positional:
            return tuple(values)
        return {name: value for (name, _, _), value in zip(self.binds, values, strict=True)}

    def read(self, fetched: list[Any]) -> list[Any]:
        results = self.results
        if results is None:
            return [self.row._make(raw) for raw in fetched]
        return [
            self.row._make([value if p is None else p(value) for p, value in zip(results, raw, strict=True)])
            for raw in fetched
        ]


class _NotPlain(Exception):
    """The statement needs SQLAlchemy's execution (see the module's docstring)."""


class Prepared:
    """A statement to run many times (``run``): on the driver's cursor where it can, else through SQLAlchemy."""

    def __init__(self, statement: Statement) -> None:
        self.statement = statement
        self._plans: weakref.WeakKeyDictionary[Dialect, _Plan | None] = weakref.WeakKeyDictionary()

    def _plan(self, dialect: Dialect) -> _Plan | None:
        try:
            return self._plans[dialect]
        except KeyError:
            pass
        try:
            plan: _Plan | None = _Plan(self.statement, dialect)
        except _NotPlain:
            plan = None
        self._plans[dialect] = plan
        return plan

    def run(self, connection: Connection, params: Params | Sequence[Params] | None = None) -> Rows:
        """Run the statement in ``connection``'s transaction: once with ``params``, or once for each of a list
        of them. A driver's error is raised as SQLAlchemy's (``sqlalchemy.exc.DBAPIError`` and its kinds)."""
        dialect = connection.dialect
        plan = self._plan(dialect)
        if plan is None:
            result = connection.execute(self.statement, params)
            return Rows(list(result) if result.returns_rows else [], result.rowcount)
        many = isinstance(params, Sequence)
        args: Any = [plan.args(p) for p in params] if isinstance(params, Sequence) else plan.args(params or {})
        cursor = connection.connection.cursor()
        try:
            if many:
                cursor.executemany(plan.sql, args)
            else:
                cursor.execute(plan.sql, args)
            rows = plan.read(list(cursor.fetchall())) if plan.row is not None else []
            return Rows(rows, cursor.rowcount)
        except dialect.loaded_dbapi.Error as error:
            # A connection that is gone (a database server restarted) is not given back to the pool, as
            # SQLAlchemy's own execution would not.
            lost = dialect.is_disconnect(error, connection.connection.dbapi_connection, cursor)
            if lost:
                connection.invalidate(error)
            raise exc.DBAPIError.instance(
                plan.sql,
                args,
                error,
                dialect.loaded_dbapi.Error,
                connection_invalidated=lost,
                dialect=dialect,
                ismulti=many,
            ) from error
        finally:
            with contextlib.suppress(dialect.loaded_dbapi.Error):  # (its connection may be gone)
                cursor.close()
