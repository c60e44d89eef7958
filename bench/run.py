"""The benchmark: our backup and restore side by side with peer tools, in one run.

For each row count N it seeds a database with `flask seed-demo`, then times whole
processes, alternating ours and the peers' so a noisy machine hurts both alike:

* backup:  `flask backup create` (also with `BACKUP_ENCRYPTION_KEY`: AES-256 members)
           vs  `sqlite3 DB .dump | gzip -6`,  a naive dump
           (every table in memory, one json.dumps, one zipfile write: how the original
           CyberQuest did it)  and, on PostgreSQL,  `pg_dump -Fc`;
* restore: `flask backup restore --mode replace` into a freshly migrated empty
           database (also of the encrypted archive)  vs  `sqlite3 new.db < dump.sql`
           and  `pg_restore -j2`;
* merge:   `flask backup restore --mode merge` into a database holding 90% of the rows;
* floor:   `psql -1` loading ready-made binary COPY files in one transaction: what the
           PostgreSQL server alone needs for any restore that is one transaction;
* latency: p95 of the System Backup page under `gunicorn -w 2`, idle and during a backup,
           with the thread executor and with Celery (bench/scale.py);
* S3:      `flask backup create` streaming to S3 (moto's server)  vs  a backup to disk
           followed by a boto3 upload of the file (bench/scale.py).

`--only core,latency,s3` picks the parts (default: all; `core` is every comparison above
the latency one), e.g. `make bench BENCH_ARGS="--only latency,s3 --rows 1000000"`.

Each figure is the median of the repeats: wall and CPU seconds (GNU time) and peak
RSS of the whole process tree (summed over its processes), and the output size. Results go to bench/RESULTS.md.
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
import tempfile
import time
import uuid
from pathlib import Path

import scale

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work"
FLASK = str(ROOT / ".venv" / "bin" / "flask")
PYTHON = str(ROOT / ".venv" / "bin" / "python")
PG_SERVER = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SECRET = "bench-secret-key-of-at-least-32-bytes"
ENCRYPTION_KEY = "bench encryption passphrase"


def env_for(database_url: str, backup_dir: Path) -> dict:
    env = dict(os.environ)
    env.update({
        "FLASK_APP": "wsgi", "DATABASE_URL": database_url, "BACKUP_DIRECTORY": str(backup_dir),
        "SECRET_KEY": SECRET, "ENABLE_AUTO_BACKUP": "false",
    })
    return env


def run(cmd, env=None, shell=False, check=True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, shell=shell, check=check, cwd=ROOT, capture_output=True, text=True)


def tree_rss_kb(pid: int) -> int:
    """Resident memory of a process and all its descendants, summed (Linux /proc)."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            total += int(Path(f"/proc/{current}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(child) for child in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return total


def timed(cmd: str, env=None) -> dict:
    """Wall, CPU and peak RSS of a whole shell command (GNU time over `sh -c`).

    GNU time's peak RSS is that of the largest single process, so the process tree
    is also sampled every 20 ms and its summed RSS kept: a pipeline, or a restore
    with its SQLite writer process, counts as the sum of its processes.
    """
    out = WORK / f"time-{uuid.uuid4().hex}.txt"
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(["/usr/bin/time", "-o", str(out), "-f", "%e %U %S %M", "sh", "-c", cmd],
                                   env=env, cwd=ROOT, stdout=stdout, stderr=stderr, text=True)
        tree_peak = 0
        while process.poll() is None:
            tree_peak = max(tree_peak, tree_rss_kb(process.pid))
            time.sleep(0.02)
        stdout.seek(0)
        stderr.seek(0)
        if process.returncode != 0:
            raise SystemExit(f"benchmark command failed: {cmd}\n{stderr.read()[-2000:]}")
        output = stdout.read()
    wall, user, system, rss_kb = out.read_text().split()[-4:]
    out.unlink()
    return {"wall": float(wall), "cpu": float(user) + float(system),
            "rss_mb": max(int(rss_kb), tree_peak) / 1024, "stdout": output}


def measure(results: dict, key: str, cmd: str, env=None, output: Path | None = None) -> dict:
    """Time ``cmd`` (see ``timed``), note the size of ``output`` if any, and add the sample to ``results[key]``."""
    sample = timed(cmd, env=env)
    sample["size_mb"] = output.stat().st_size / 2**20 if output is not None else 0.0
    results[key].append(sample)
    return sample


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


def copy_floor_script(url: str, directory: Path) -> Path:
    """Export the data tables as binary COPY files and write a psql script loading them in one go.

    Timed with ``psql -1``, it is what the server alone needs for a restore in one
    transaction, done the cheapest way: foreign keys, primary keys, unique
    constraints and indexes are all dropped first and built again after the load, as
    pg_restore builds them. It is a floor for any single-transaction restore.
    """
    import sqlalchemy as sa

    sys.path.insert(0, str(ROOT))
    from app.models import data_tables

    engine = sa.create_engine(url)
    drop_keys, drop_others, loads, add_others, add_keys = ["SET maintenance_work_mem = '256MB';"], [], [], [], []
    with engine.connect() as conn:
        for table in data_tables():
            for name, definition in conn.execute(sa.text(
                    "SELECT i.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x "
                    "JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = CAST(:t AS regclass) "
                    "AND NOT x.indisunique AND NOT x.indisprimary"), {"t": table.name}):
                drop_others.append(f"DROP INDEX {name};")
                add_others.append(f"{definition};")
            for name, kind, definition in conn.execute(sa.text(
                    "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE contype IN ('f', 'p', 'u') AND conrelid = CAST(:t AS regclass)"), {"t": table.name}):
                drop = f"ALTER TABLE {table.name} DROP CONSTRAINT {name};"
                add = f"ALTER TABLE {table.name} ADD CONSTRAINT {name} {definition};"
                if kind == "f":  # dropped before, and added after, the keys they point at
                    drop_keys.append(drop)
                    add_keys.append(add)
                else:
                    drop_others.append(drop)
                    add_others.append(add)
            columns = ", ".join(column.name for column in table.columns)
            data = directory / f"{table.name}.copy"
            run(["psql", "-q", libpq_url(url), "-c",
                 f"\\copy {table.name} ({columns}) TO '{data}' WITH (FORMAT binary)"])
            loads.append(f"\\copy {table.name} ({columns}) FROM '{data}' WITH (FORMAT binary)")
    engine.dispose()
    script = directory / "load.sql"
    script.write_text("\n".join(drop_keys + drop_others + loads + add_others + add_keys) + "\n")
    return script


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

PARTS = ("core", "latency", "s3")


def bench_rows(rows: int, repeats: int, with_pg: bool, parts: tuple[str, ...] = PARTS) -> dict:
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
                                ("ours_backup", "ours_backup_encrypted", "sqlite_dump_gzip", "naive_dump",
                                 "ours_restore", "ours_restore_encrypted", "sqlite_restore", "sqlite_restore_wal",
                                 "ours_merge", "ours_backup_pg", "pg_dump",
                                 "ours_restore_pg", "pg_restore", "pg_copy_floor",
                                 "ours_backup_s3", "disk_then_upload")}
    extra: dict[str, dict] = {}
    if "s3" in parts:
        bench_s3(results, env, backups, repeats)
    if "latency" in parts:
        extra.update(bench_page_latency(env, repeats))
    if "core" not in parts:
        return {**{key: median_of(samples) for key, samples in results.items() if samples}, **extra}
    dump_gz = base / "dump.sql.gz"
    naive_zip = base / "naive.zip"
    for i in range(repeats):
        print(f"  repeat {i + 1}/{repeats}: backups", flush=True)
        measure(results, "sqlite_dump_gzip", f"sqlite3 {db_path} .dump | gzip -6 > {dump_gz}", output=dump_gz)

        sample = measure(results, "ours_backup", f"{FLASK} backup create", env=env)
        archive = backups / sample["stdout"].strip().splitlines()[-1].strip().split()[-1]
        if not archive.exists():
            archive = newest_archive(backups)
        sample["size_mb"] = archive.stat().st_size / 2**20

        sample = measure(results, "ours_backup_encrypted", f"{FLASK} backup create",
                         env=dict(env, BACKUP_ENCRYPTION_KEY=ENCRYPTION_KEY))
        encrypted_archive = backups / sample["stdout"].strip().splitlines()[-1].strip().split()[-1]
        sample["size_mb"] = encrypted_archive.stat().st_size / 2**20

        measure(results, "naive_dump", f"{PYTHON} bench/naive_backup.py {db_path} {naive_zip}", output=naive_zip)

    dump_sql = base / "dump.sql"
    with gzip.open(dump_gz, "rb") as src, open(dump_sql, "wb") as dst:
        shutil.copyfileobj(src, dst)
    target = base / "target.db"
    for i in range(repeats):
        print(f"  repeat {i + 1}/{repeats}: restores", flush=True)
        peer_db = base / "peer.db"
        peer_db.unlink(missing_ok=True)
        measure(results, "sqlite_restore", f"sqlite3 {peer_db} < {dump_sql}", output=peer_db)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{peer_db}{suffix}").unlink(missing_ok=True)
        measure(results, "sqlite_restore_wal", f"(echo 'PRAGMA journal_mode = WAL;'; cat {dump_sql}) "
                f"| sqlite3 {peer_db} > /dev/null", output=peer_db)

        target_url = fresh_sqlite(target, base / "target-backups")
        target_env = env_for(target_url, base / "target-backups")
        measure(results, "ours_restore_encrypted", f"{FLASK} backup restore {encrypted_archive} --mode replace --yes",
                env=dict(target_env, BACKUP_ENCRYPTION_KEY=ENCRYPTION_KEY), output=target)

        target_url = fresh_sqlite(target, base / "target-backups")
        measure(results, "ours_restore", f"{FLASK} backup restore {archive} --mode replace --yes", env=target_env,
                output=target)

        delete_last_tenth(target_url)
        measure(results, "ours_merge", f"{FLASK} backup restore {archive} --mode merge --yes", env=target_env,
                output=target)

    if with_pg:
        pg_backups = base / "pg-backups"
        pg_url = fresh_pg("cq_bench_source", pg_backups)
        seed(pg_url, rows, pg_backups)
        pg_env = env_for(pg_url, pg_backups)
        pg_file = base / "pg.dump"
        floor_script = copy_floor_script(pg_url, base)
        for i in range(repeats):
            print(f"  repeat {i + 1}/{repeats}: PostgreSQL", flush=True)
            measure(results, "pg_dump", f"pg_dump -Fc -f {pg_file} '{libpq_url(pg_url)}'", output=pg_file)

            sample = measure(results, "ours_backup_pg", f"{FLASK} backup create", env=pg_env)
            pg_archive = newest_archive(pg_backups)
            sample["size_mb"] = pg_archive.stat().st_size / 2**20

            peer_url = fresh_pg("cq_bench_peer", pg_backups, migrate=False)
            measure(results, "pg_restore", f"pg_restore -j2 --no-owner -d '{libpq_url(peer_url)}' {pg_file}")

            target_pg = fresh_pg("cq_bench_target", pg_backups)
            measure(results, "ours_restore_pg", f"{FLASK} backup restore {pg_archive} --mode replace --yes",
                    env=env_for(target_pg, pg_backups))

            floor_pg = fresh_pg("cq_bench_floor", pg_backups)
            measure(results, "pg_copy_floor",
                    f"psql -q -v ON_ERROR_STOP=1 -1 -f {floor_script} '{libpq_url(floor_pg)}'")
        for name in ("cq_bench_source", "cq_bench_peer", "cq_bench_target", "cq_bench_floor"):
            pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return {**{key: median_of(samples) for key, samples in results.items() if samples}, **extra}


def bench_s3(results: dict, env: dict, backups: Path, repeats: int) -> None:
    """Our backup streamed to S3 vs a disk backup then a boto3 upload, alternating, on moto's server."""
    moto = scale.MotoServer()
    try:
        streamed, staged = scale.s3_commands(PYTHON, FLASK, backups, moto)
        for i in range(repeats):
            print(f"  repeat {i + 1}/{repeats}: S3", flush=True)
            sample = measure(results, "ours_backup_s3", streamed, env=moto.env(env))
            sample["size_mb"] = moto.client.head_object(
                Bucket=scale.S3_BUCKET, Key=sample["stdout"].strip().splitlines()[-1])["ContentLength"] / 2**20
            moto.empty()
            sample = measure(results, "disk_then_upload", staged, env=moto.env(env) | {"BACKUP_STORAGE": "local"})
            sample["size_mb"] = newest_archive(backups).stat().st_size / 2**20
            newest_archive(backups).unlink()
            moto.empty()
    finally:
        moto.stop()


def bench_page_latency(env: dict, repeats: int) -> dict:
    """Medians over the repeats of the page's p95 latency, idle and during a backup, per executor."""
    runs = []
    for i in range(repeats):
        print(f"  repeat {i + 1}/{repeats}: page latency under gunicorn", flush=True)
        runs.append(scale.bench_latency(run, FLASK, env))
    return {key: {figure: statistics.median(r[key][figure] for r in runs) for figure in runs[0][key]}
            for key in runs[0]}


# --- Report ----------------------------------------------------------------------

LABELS = {
    "ours_backup": "CyberQuest `flask backup create` (SQLite)",
    "ours_backup_encrypted": "the same with `BACKUP_ENCRYPTION_KEY` (AES-256 members)",
    "sqlite_dump_gzip": "`sqlite3 .dump | gzip -6`",
    "naive_dump": "naive dump (json.dumps + zipfile, original CyberQuest)",
    "ours_backup_pg": "CyberQuest `flask backup create` (PostgreSQL)",
    "pg_dump": "`pg_dump -Fc`",
    "ours_restore": "CyberQuest `flask backup restore --mode replace` (SQLite)",
    "ours_restore_encrypted": "the same, of the encrypted archive",
    "sqlite_restore": "`sqlite3 new.db < dump.sql`",
    "sqlite_restore_wal": "the same, in WAL mode (as the app's database runs)",
    "ours_merge": "CyberQuest `flask backup restore --mode merge`, 90% present (SQLite)",
    "ours_restore_pg": "CyberQuest `flask backup restore --mode replace` (PostgreSQL)",
    "pg_restore": "`pg_restore -j2`",
    "pg_copy_floor": "`psql -1` binary COPY of ready-made files, keys and indexes built after (the server's share of a one-transaction restore)",
    "ours_backup_s3": "CyberQuest `flask backup create` streaming to S3 (moto server)",
    "disk_then_upload": "`flask backup create` to disk, then a boto3 `upload_file` of it",
}
LATENCY_LABELS = {
    "latency_thread": ("thread executor (the backup runs in a web worker)", "≤ 3×"),
    "latency_celery": ("Celery executor (a `celery worker` runs it; Redis broker)", "≤ 1.5×"),
}

RATIOS = [
    ("backup wall vs `sqlite3 .dump | gzip -6`", "ours_backup", "sqlite_dump_gzip", "wall", "≤ 0.6×"),
    ("archive size vs gzipped SQL dump", "ours_backup", "sqlite_dump_gzip", "size_mb", "≤ 1.1×"),
    ("encrypted backup wall vs unencrypted", "ours_backup_encrypted", "ours_backup", "wall", "≤ 1.15×"),
    ("backup wall vs naive dump", "ours_backup", "naive_dump", "wall", "—"),
    ("backup peak RSS vs naive dump", "ours_backup", "naive_dump", "rss_mb", "—"),
    ("backup wall vs `pg_dump -Fc`", "ours_backup_pg", "pg_dump", "wall", "≤ 1.0×"),
    ("restore wall vs `sqlite3 < dump.sql`", "ours_restore", "sqlite_restore", "wall", "≤ 1.0×"),
    ("restore wall vs `sqlite3 < dump.sql` in WAL mode", "ours_restore", "sqlite_restore_wal", "wall", "—"),
    ("`sqlite3 < dump.sql`: WAL mode vs rollback journal", "sqlite_restore_wal", "sqlite_restore", "wall", "—"),
    ("encrypted replace restore wall vs unencrypted", "ours_restore_encrypted", "ours_restore", "wall", "≤ 1.10×"),
    ("restore wall vs `pg_restore -j2`", "ours_restore_pg", "pg_restore", "wall", "≤ 1.5×"),
    ("merge wall vs our replace", "ours_merge", "ours_restore", "wall", "≤ 1.5×"),
    ("one-transaction COPY floor vs `pg_restore -j2`", "pg_copy_floor", "pg_restore", "wall", "—"),
    ("backup to S3 wall vs disk backup + boto3 upload", "ours_backup_s3", "disk_then_upload", "wall", "≤ 1.0×"),
    ("restore wall vs that floor (PostgreSQL)", "ours_restore_pg", "pg_copy_floor", "wall", "—"),
]


def render(all_results: dict[int, dict], repeats: int) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}. "
        f"Run on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Figures are medians of {repeats} "
        "run(s) on a shared, noisy machine, ours and the peers alternating in the same run; "
        "wall and CPU seconds and peak RSS are of the whole process tree (start-up included; RSS summed "
        "over its processes, sampled every 20 ms).",
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
        if "ours_backup_s3" in results and "disk_then_upload" in results:
            difference = results["ours_backup_s3"]["rss_mb"] - results["disk_then_upload"]["rss_mb"]
            lines += ["", f"Peak RSS of the backup to S3 minus that of disk + upload: {difference:+.0f} MB "
                      "(target: within 20 MB).", ""]
        latency = [key for key in LATENCY_LABELS if key in results]
        if latency:
            lines += ["", "p95 latency of `GET /admin/system-backup` (the page, logged in) under "
                      "`gunicorn -w 2`, idle and during the backup:", "",
                      "| executor | idle p95 ms | during backup p95 ms | samples during | ratio | target |",
                      "| --- | ---: | ---: | ---: | ---: | --- |"]
            for key in latency:
                r, (label, target) = results[key], LATENCY_LABELS[key]
                lines.append(f"| {label} | {r['idle_p95_ms']:.1f} | {r['busy_p95_ms']:.1f} | "
                             f"{r['busy_samples']:.0f} | {r['busy_p95_ms'] / r['idle_p95_ms']:.2f}× | {target} |")
        lines.append("")
    if len(all_results) >= 2 and all("ours_backup" in r for r in all_results.values()):
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
    parser.add_argument("--only", default=",".join(PARTS),
                        help=f"comma-separated parts to run, of {', '.join(PARTS)} (default: all)")
    args = parser.parse_args()
    parts = tuple(part.strip() for part in args.only.split(",") if part.strip())
    if not parts or set(parts) - set(PARTS):
        parser.error(f"--only takes a comma-separated list of {', '.join(PARTS)}")
    WORK.mkdir(parents=True, exist_ok=True)
    all_results = {}
    for rows in (int(r) for r in args.rows.split(",")):
        all_results[rows] = bench_rows(rows, args.repeats, not args.no_pg, parts)
        (WORK / "results.json").write_text(json.dumps(all_results, indent=2))
    report = render(all_results, args.repeats)
    Path(args.output).write_text(report)
    print(report)


if __name__ == "__main__":
    main()
