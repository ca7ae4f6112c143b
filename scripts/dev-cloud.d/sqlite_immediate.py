"""SQLite transactions that wait for each other instead of failing, for the dev cloud.

oslo.db turns pysqlite's own transaction handling off and starts every transaction with
a plain (deferred) BEGIN. Such a transaction reads first and asks for the write lock
only at its first write; if another connection has written in between, SQLite refuses
at once with "database is locked" (waiting could deadlock), and Glance answers HTTP 500.
Parallel tests hit that on create, PATCH and DELETE alike.

`install()` makes every transaction start with BEGIN IMMEDIATE, which takes the write
lock up front and so waits (up to BUSY_TIMEOUT_MS) behind the current writer. That
serialises the services' transactions, which is fine for a test cloud on one machine.
The WSGI entry points call it before importing the service.
"""

import sqlite3

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool

# How long a transaction waits for the write lock before SQLite gives up.
BUSY_TIMEOUT_MS = 30_000


def _begin_immediate(conn, cursor, statement, parameters, context, executemany):
    if conn.dialect.name == "sqlite" and statement.strip().upper() == "BEGIN":
        return "BEGIN IMMEDIATE", parameters
    return statement, parameters


def _busy_timeout(dbapi_connection, connection_record):
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


def install():
    event.listen(Engine, "before_cursor_execute", _begin_immediate, retval=True)
    event.listen(Pool, "connect", _busy_timeout)
