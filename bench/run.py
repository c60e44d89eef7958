"""The benchmark: our backup and restore side by side with peer tools, in one run.

For each row count N it seeds a database with `flask seed-demo`, then times whole
processes, alternating ours and the peers' so a noisy machine hurts both alike:

* backup:  `flask backup create`  vs  `sqlite3 DB .dump | gzip -6`,  a naive dump
           (every table in memory, one json.dumps, one zipfile write: how the original
           CyberQuest did it)  and, on PostgreSQL,  `pg_dump -Fc`;
* restore: `flask backup restore --mode replace` into a freshly migrated empty
           database  vs  `sqlite3 new.db < dump.sql`  and  `pg_restore -j2`;
* merge:   `flask backup restore --mode merge` into a database holding 90% of the rows.

Each figure is the median of the repeats: wall and CPU seconds and peak RSS of the
whole process tree (GNU time), and the output size. Results go to bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work"
FLASK = str(ROOT / ".venv" / "bin" / "flask")
PYTHON = str(ROOT / ".venv" / "bin" / "python")
PG_SERVER = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SECRET = "bench-secret-key"


def env_for(database_url: str, backup_dir: Path) -> dict:
    env = dict(os.environ)
    env.update({
        "FLASK_APP": "wsgi", "DATABASE_URL": database_url, "BACKUP_DIRECTORY": str(backup_dir),
        "SECRET_KEY": SECRET, "ENABLE_AUTO_BACKUP": "false",
    })
    return env


def run(cmd, env=None, shell=False, check=True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, shell=shell, check=check, cwd=ROOT, capture_output=True, text=True)


def timed(cmd: str, env=None) -> dict:
    """Wall, CPU and peak RSS of a whole shell command (GNU time over `sh -c`)."""
    out = WORK / f"time-{uuid.uuid4().hex}.txt"
    result = subprocess.run(["/usr/bin/time", "-o", str(out), "-f", "%e %U %S %M", "sh", "-c", cmd],
                            env=env, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"benchmark command failed: {cmd}\n{result.stderr[-2000:]}")
    wall, user, system, rss_kb = out.read_text().split()[-4:]
    out.unlink()
    return {"wall": float(wall), "cpu": float(user) + float(system), "rss_mb": int(rss_kb) / 1024,
            "stdout": result.stdout}


def median_of(samples: list[dict]) -> dict:
    return {key: statistics.median(s[key] for s in samples) for key in ("wall", "cpu", "rss_mb", "size_mb")}


# --- Databases ---------------------------------------------------------------------

def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def fresh_sqlite(path: Path, backup_dir: Path) -> str:
    if path.exists():
        path.unlink()
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    url = sqlite_url(path)
    run([FLASK, "db", "upgrade"], env=env_for(url, backup_dir))
    return url


def pg_admin(sql: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(sql))
    engine.dispose()


def fresh_pg(name: str, backup_dir: Path, migrate: bool = True) -> str:
    import sqlalchemy as sa

    pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    pg_admin(f"CREATE DATABASE {name}")
    url = sa.make_url(PG_SERVER).set(database=name).render_as_string(hide_password=False)
    if migrate:
        run([FLASK, "db", "upgrade"], env=env_for(url, backup_dir))
    return url


def libpq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def seed(url: str, rows: int, backup_dir: Path) -> None:
    started = time.monotonic()
    run([FLASK, "seed-demo", "--rows", str(rows)], env=env_for(url, backup_dir))
    print(f"  seeded {rows:,} rows in {time.monotonic() - started:.1f} s", flush=True)


def newest_archive(backup_dir: Path) -> Path:
    return max(backup_dir.glob("cyberquest_backup_*.zip"), key=lambda p: p.stat().st_mtime)


def delete_last_tenth(url: str) -> None:
    """Leave about 90% of every table's rows; children of removed parents go too."""
    import sqlalchemy as sa

    sys.path.insert(0, str(ROOT))
    from app.models import data_tables

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        cutoffs = {}
        for table in data_tables():
            pk = next(iter(table.primary_key.columns))
            count = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            cutoffs[table.name] = conn.execute(sa.select(pk).order_by(pk).offset(int(count * 0.9)).limit(1)).scalar()
        for table in reversed(data_tables()):
            pk = next(iter(table.primary_key.columns))
            doomed = [pk >= cutoffs[table.name]] if cutoffs[table.name] is not None else []
            for fk in table.foreign_keys:
                if cutoffs.get(fk.column.table.name) is not None:
                    doomed.append(fk.parent >= cutoffs[fk.column.table.name])
            if doomed:
                conn.execute(table.delete().where(sa.or_(*doomed)))
    engine.dispose()


# --- One row count ---------------------------------------------------------------

def bench_rows(rows: int, repeats: int, with_pg: bool) -> dict:
    print(f"== {rows:,} rows", flush=True)
    base = WORK / str(rows)
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    backups = base / "backups"
    db_path = base / "source.db"
    url = fresh_sqlite(db_path, backups)
    seed(url, rows, backups)
    env = env_for(url, backups)
    results: dict[str, list] = {k: [] for k in
                                ("ours_backup", "sqlite_dump_gzip", "naive_dump", "ours_restore",
                                 "sqlite_restore", "ours_merge", "ours_backup_pg", "pg_dump",
                                 "ours_restore_pg", "pg_restore")}
    dump_gz = base / "dump.sql.gz"
    naive_zip = base / "naive.zip"
    for i in range(repeats):
        print(f"  repeat {i + 1}/{repeats}: backups", flush=True)
        sample = timed(f"sqlite3 {db_path} .dump | gzip -6 > {dump_gz}")
        sample["size_mb"] = dump_gz.stat().st_size / 2**20
        results["sqlite_dump_gzip"].append(sample)

        sample = timed(f"{FLASK} backup create", env=env)
        archive = backups / sample["stdout"].strip().splitlines()[-1].strip().split()[-1]
        if not archive.exists():
            archive = newest_archive(backups)
        sample["size_mb"] = archive.stat().st_size / 2**20
        results["ours_backup"].append(sample)

        sample = timed(f"{PYTHON} bench/naive_backup.py {db_path} {naive_zip}")
        sample["size_mb"] = naive_zip.stat().st_size / 2**20
        results["naive_dump"].append(sample)

    dump_sql = base / "dump.sql"
    with gzip.open(dump_gz, "rb") as src, open(dump_sql, "wb") as dst:
        shutil.copyfileobj(src, dst)
    target = base / "target.db"
    for i in range(repeats):
        print(f"  repeat {i + 1}/{repeats}: restores", flush=True)
        peer_db = base / "peer.db"
        peer_db.unlink(missing_ok=True)
        sample = timed(f"sqlite3 {peer_db} < {dump_sql}")
        sample["size_mb"] = peer_db.stat().st_size / 2**20
        results["sqlite_restore"].append(sample)

        target_url = fresh_sqlite(target, base / "target-backups")
        sample = timed(f"{FLASK} backup restore {archive} --mode replace --yes",
                       env=env_for(target_url, base / "target-backups"))
        sample["size_mb"] = target.stat().st_size / 2**20
        results["ours_restore"].append(sample)

        delete_last_tenth(target_url)
        sample = timed(f"{FLASK} backup restore {archive} --mode merge --yes",
                       env=env_for(target_url, base / "target-backups"))
        sample["size_mb"] = target.stat().st_size / 2**20
        results["ours_merge"].append(sample)

    if with_pg:
        pg_backups = base / "pg-backups"
        pg_url = fresh_pg("cq_bench_source", pg_backups)
        seed(pg_url, rows, pg_backups)
        pg_env = env_for(pg_url, pg_backups)
        pg_file = base / "pg.dump"
        for i in range(repeats):
            print(f"  repeat {i + 1}/{repeats}: PostgreSQL", flush=True)
            sample = timed(f"pg_dump -Fc -f {pg_file} '{libpq_url(pg_url)}'")
            sample["size_mb"] = pg_file.stat().st_size / 2**20
            results["pg_dump"].append(sample)

            sample = timed(f"{FLASK} backup create", env=pg_env)
            pg_archive = newest_archive(pg_backups)
            sample["size_mb"] = pg_archive.stat().st_size / 2**20
            results["ours_backup_pg"].append(sample)

            peer_url = fresh_pg("cq_bench_peer", pg_backups, migrate=False)
            sample = timed(f"pg_restore -j2 --no-owner -d '{libpq_url(peer_url)}' {pg_file}")
            sample["size_mb"] = 0.0
            results["pg_restore"].append(sample)

            target_pg = fresh_pg("cq_bench_target", pg_backups)
            sample = timed(f"{FLASK} backup restore {pg_archive} --mode replace --yes",
                           env=env_for(target_pg, pg_backups))
            sample["size_mb"] = 0.0
            results["ours_restore_pg"].append(sample)
        for name in ("cq_bench_source", "cq_bench_peer", "cq_bench_target"):
            pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return {key: median_of(samples) for key, samples in results.items() if samples}


# --- Report ----------------------------------------------------------------------

LABELS = {
    "ours_backup": "CyberQuest `flask backup create` (SQLite)",
    "sqlite_dump_gzip": "`sqlite3 .dump | gzip -6`",
    "naive_dump": "naive dump (json.dumps + zipfile, original CyberQuest)",
    "ours_backup_pg": "CyberQuest `flask backup create` (PostgreSQL)",
    "pg_dump": "`pg_dump -Fc`",
    "ours_restore": "CyberQuest `flask backup restore --mode replace` (SQLite)",
    "sqlite_restore": "`sqlite3 new.db < dump.sql`",
    "ours_merge": "CyberQuest `flask backup restore --mode merge`, 90% present (SQLite)",
    "ours_restore_pg": "CyberQuest `flask backup restore --mode replace` (PostgreSQL)",
    "pg_restore": "`pg_restore -j2`",
}

RATIOS = [
    ("backup wall vs `sqlite3 .dump | gzip -6`", "ours_backup", "sqlite_dump_gzip", "wall", "≤ 0.6×"),
    ("archive size vs gzipped SQL dump", "ours_backup", "sqlite_dump_gzip", "size_mb", "≤ 1.1×"),
    ("backup wall vs naive dump", "ours_backup", "naive_dump", "wall", "—"),
    ("backup peak RSS vs naive dump", "ours_backup", "naive_dump", "rss_mb", "—"),
    ("backup wall vs `pg_dump -Fc`", "ours_backup_pg", "pg_dump", "wall", "≤ 1.0×"),
    ("restore wall vs `sqlite3 < dump.sql`", "ours_restore", "sqlite_restore", "wall", "≤ 1.0×"),
    ("restore wall vs `pg_restore -j2`", "ours_restore_pg", "pg_restore", "wall", "≤ 1.5×"),
    ("merge wall vs our replace", "ours_merge", "ours_restore", "wall", "≤ 1.5×"),
]


def render(all_results: dict[int, dict], repeats: int) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}. "
        f"Run on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Figures are medians of {repeats} "
        "run(s) on a shared, noisy machine, ours and the peers alternating in the same run; "
        "wall and CPU seconds and peak RSS are of the whole process tree (start-up included).",
        "",
    ]
    for rows, results in all_results.items():
        lines += [f"## {rows:,} rows", "", "| command | wall s | CPU s | peak RSS MB | output MB |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        for key, label in LABELS.items():
            if key in results:
                r = results[key]
                lines.append(f"| {label} | {r['wall']:.2f} | {r['cpu']:.2f} | {r['rss_mb']:.0f} | "
                             f"{r['size_mb']:.1f} |" if r["size_mb"] else
                             f"| {label} | {r['wall']:.2f} | {r['cpu']:.2f} | {r['rss_mb']:.0f} | — |")
        lines += ["", "| ratio | value | target |", "| --- | ---: | --- |"]
        for label, ours, peer, metric, target in RATIOS:
            if ours in results and peer in results and results[peer][metric]:
                lines.append(f"| {label} | {results[ours][metric] / results[peer][metric]:.2f}× | {target} |")
        lines.append("")
    if len(all_results) >= 2:
        small, large = sorted(all_results)[0], sorted(all_results)[-1]
        growth = all_results[large]["ours_backup"]["rss_mb"] / all_results[small]["ours_backup"]["rss_mb"] - 1
        lines += [f"Peak RSS of our backup grows {growth * 100:.0f}% from {small:,} to {large:,} rows "
                  "(target: under 15%, and at most 120 MB).", ""]
        if "ours_restore" in all_results[large]:
            lines += [f"Peak RSS of our replace restore at {large:,} rows: "
                      f"{all_results[large]['ours_restore']['rss_mb']:.0f} MB (target: at most 200 MB).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="100000,1000000", help="comma-separated row counts")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-pg", action="store_true", help="skip the PostgreSQL comparison")
    parser.add_argument("--output", default=str(ROOT / "bench" / "RESULTS.md"))
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    all_results = {}
    for rows in (int(r) for r in args.rows.split(",")):
        all_results[rows] = bench_rows(rows, args.repeats, not args.no_pg)
        (WORK / "results.json").write_text(json.dumps(all_results, indent=2))
    report = render(all_results, args.repeats)
    Path(args.output).write_text(report)
    print(report)


if __name__ == "__main__":
    main()
