"""MariaDB and MySQL: consistent-snapshot reads, an explicit transaction, and a lenient collation.

No index is rebuilt after a bulk load and no AUTO_INCREMENT is moved: DDL there
would commit the restore's transaction half-way, and InnoDB moves AUTO_INCREMENT
past every explicit id inserted anyway.
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
