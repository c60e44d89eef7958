"""MariaDB and MySQL: consistent-snapshot reads, an explicit transaction, and a lenient collation.

No index is rebuilt after a bulk load and no AUTO_INCREMENT is moved: DDL there
would commit the restore's transaction half-way (only TEMPORARY tables are made
and dropped without a commit), and InnoDB moves AUTO_INCREMENT past every explicit
id inserted anyway.
"""
from __future__ import annotations

from sqlalchemy.engine import Connection

from .base import Dialect


def _default_collation_key(value):
    # MariaDB's default collation compares case- and trailing-space-insensitively.
    return value.casefold().rstrip(" ") if isinstance(value, str) else value


class MySQLDialect(Dialect):
    """MariaDB/MySQL through PyMySQL."""

    collation_key = staticmethod(_default_collation_key)

    def _begin_snapshot(self, conn: Connection) -> Connection:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        conn.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        return conn

    def begin(self, replacing: bool = False) -> None:
        self.cursor.execute("START TRANSACTION")

    def keep_copy(self, name: str, select: str, key: str) -> None:
        """A TEMPORARY table, its index declared with it: only that commits nothing, where CREATE INDEX would.
        A temporary table outlives a rollback on the pooled connection, so one a failed restore left goes first."""
        self.cursor.execute(f"DROP TEMPORARY TABLE IF EXISTS {self.q(name)}")
        self.cursor.execute(f"CREATE TEMPORARY TABLE {self.q(name)} (INDEX ({self.q(key)})) {select}")

    def drop_copy(self, name: str) -> None:
        self.cursor.execute(f"DROP TEMPORARY TABLE {self.q(name)}")

    def text_differs(self, left: str, right: str) -> str:
        """The default collation ignores case: compare the bytes."""
        return f"CAST({left} AS BINARY) <> CAST({right} AS BINARY)"
