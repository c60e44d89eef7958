"""The peer 'naive dump': how the original CyberQuest made backups.

Every table is read whole into memory, the document is built with one json.dumps,
and written with one zipfile call. Used only by the benchmark.
"""
import json
import sqlite3
import sys
import zipfile
from datetime import datetime, timezone

TABLES = ["users", "login_attempts", "email_verifications", "contact_submissions", "password_reset_tokens"]


def main(db_path: str, out_path: str) -> None:
    conn = sqlite3.connect(db_path)
    conn.row_factory = sqlite3.Row
    data = {table: [dict(row) for row in conn.execute(f"SELECT * FROM {table}")] for table in TABLES}
    metadata = {"created_at": datetime.now(timezone.utc).isoformat(), "version": "2.0",
                "record_counts": {table: len(rows) for table, rows in data.items()}}
    with zipfile.ZipFile(out_path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("database_backup.json", json.dumps(data, indent=2, default=str))
        archive.writestr("backup_metadata.json", json.dumps(metadata, indent=2))
        archive.writestr("app_info.json", json.dumps({"app_name": "CyberQuest"}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
