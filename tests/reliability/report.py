"""`make reliability`: run the reliability tests at full counts and write docs/RELIABILITY.md.

Each row below is filled by the tests that call ``support.reliability.record``
with its key. A row that no test recorded, a row short of its count, or a loss
above 0 makes this script exit 1 (the file is still written, so it shows what failed).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUTPUT = REPO / "docs" / "RELIABILITY.md"

# key: (what is tried, the least number of cases the row needs)
ROWS: dict[str, tuple[str, int]] = {
    "kill-backup-sqlite": ("kill -9 during a backup, SQLite", 30),
    "kill-backup-postgresql": ("kill -9 during a backup, PostgreSQL", 30),
    "kill-replace-sqlite": ("kill -9 during a replace, SQLite", 30),
    "kill-replace-postgresql": ("kill -9 during a replace, PostgreSQL", 30),
    "kill-merge-sqlite": ("kill -9 during a merge, SQLite", 30),
    "kill-merge-postgresql": ("kill -9 during a merge, PostgreSQL", 30),
    "pg-terminate": ("PostgreSQL connection killed mid-restore (`pg_terminate_backend`)", 5),
    "storage-fsize": ("storage failing mid-write: `RLIMIT_FSIZE` in a child process", 1),
    "storage-readonly": ("storage failing mid-write: a read-only backup directory", 1),
    "storage-s3-drop": ("storage failing mid-write: an S3 endpoint that drops the connection", 1),
    "fuzz-archives": ("fuzzed archives (Hypothesis over ZIP bytes, names, JSON, types, checksums, signatures)", 2000),
    "authz-matrix": ("authorisation matrix from `app.url_map` (route × method × caller)", 1),
    "path-traversal": ("path-traversal corpus on download, delete, pin, verify and restore-by-name", 25),
    "body-limits": ("body-limit probes (chunked, multipart fields, files, JSON) as anonymous, user and admin", 1),
    "zip-bombs": ("zip bombs and crafted central directories", 1),
    "brute-force": ("login brute force across two processes", 1),
    "login-timing": ("timing of known vs unknown accounts (login, reset, verification mail)", 1),
}


def machine() -> str:
    """The machine in one line: cores, memory, OS, Python and the database servers' versions."""
    cores = os.cpu_count()
    with open("/proc/meminfo") as info:
        total_kb = int(info.readline().split()[1])
    servers = []
    for label, command in (("PostgreSQL", ["psql", "-h", "127.0.0.1", "-U", "postgres", "-tAc", "SHOW server_version"]),
                           ("MariaDB", ["mariadb", "-h", "127.0.0.1", "-u", "root", "-N", "-e", "SELECT VERSION()"])):
        try:
            version = subprocess.run(command, capture_output=True, text=True, timeout=10).stdout.strip().split()[0]
            servers.append(f"{label} {version}")
        except (OSError, IndexError, subprocess.TimeoutExpired):
            servers.append(f"{label} (not reachable)")
    return (f"{cores} cores, {total_kb / 1024 / 1024:.0f} GiB, {platform.machine()}, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}, " + ", ".join(servers))


def collect(path: Path) -> dict[str, dict]:
    """The recorded lines summed per key: cases, losses, the measured texts and the tests."""
    rows: dict[str, dict] = {}
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        row = rows.setdefault(entry["key"], {"cases": 0, "losses": 0, "measured": [], "tests": []})
        row["cases"] += entry["cases"]
        row["losses"] += entry["losses"]
        row["measured"].append(entry["measured"])
        if entry["test"] not in row["tests"]:
            row["tests"].append(entry["test"])
    return rows


def render(rows: dict[str, dict], started: dt.datetime, seconds: float, pytest_status: int) -> tuple[str, list[str]]:
    """The Markdown page and the list of rows that fall short."""
    short = []
    lines = [
        "# Reliability, in figures",
        "",
        "Written by `make reliability` (tests/reliability/report.py); do not edit by hand. Each row comes from a",
        "test that asserts its loss count is 0, run here at full counts; `make test` runs the same tests with",
        "fewer points.",
        "",
        f"Run on {started:%Y-%m-%d %H:%M} UTC, {seconds / 60:.1f} min, on {machine()}.",
        f"pytest exit status: {pytest_status}.",
        "",
        "| what | cases | at least | lost / leaked | measured | test |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for key, (what, least) in ROWS.items():
        row = rows.get(key)
        if row is None:
            short.append(f"{key}: not recorded")
            lines.append(f"| {what} | — | {least} | — | not measured | — |")
            continue
        if row["cases"] < least:
            short.append(f"{key}: {row['cases']} cases, fewer than {least}")
        if row["losses"]:
            short.append(f"{key}: {row['losses']} lost")
        measured = "; ".join(row["measured"]).replace("|", "\\|")
        tests = "<br>".join(f"`{test}`" for test in row["tests"])
        lines.append(f"| {what} | {row['cases']} | {least} | {row['losses']} | {measured} | {tests} |")
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        short.append("unknown keys recorded: " + ", ".join(unknown))
    lines += ["", "Shortfalls: " + ("none." if not short else "; ".join(short) + "."), ""]
    return "\n".join(lines), short


def main(argv: list[str]) -> int:
    started = dt.datetime.now(dt.timezone.utc)
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "figures.jsonl"
        report.touch()
        env = dict(os.environ, RELIABILITY_FULL="1", RELIABILITY_REPORT=str(report))
        status = subprocess.call([sys.executable, "-m", "pytest", "-m", "reliability", "-p", "no:cacheprovider",
                                  *argv], cwd=REPO, env=env)
        seconds = (dt.datetime.now(dt.timezone.utc) - started).total_seconds()
        page, short = render(collect(report), started, seconds, status)
    OUTPUT.write_text(page)
    print(f"wrote {OUTPUT.relative_to(REPO)}" + ("" if not short else "; short: " + "; ".join(short)))
    return 1 if status or short else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
