"""`flask backup restore` and `flask backup verify`.

Every failure is one line on stderr and a non-zero exit status, never a traceback.
"""
from __future__ import annotations

import sys

import click
import orjson

from ..audit import CLI
from ..restore.accounts import describe_security_changes
from ..restore.options import CONFLICT_POLICIES, MODES, RestoreOptions, parse_tables
from ..restore_service import cli_source, start_restore
from ..verify import verify_source
from . import progress_printer


def _describe(result: dict, verb: str) -> list[str]:
    lines = [f"{verb} ({result['mode']}):"]
    for table, counts in result["tables"].items():
        lines.append(f"  {table}: {counts['inserted']} inserted, {counts['updated']} updated, "
                     f"{counts['skipped']} skipped, {counts['deleted']} deleted")
    for group in result["skipped_reasons"]:
        lines.append(f"  skipped {group['count']} {group['table']} row(s): {group['reason']}")
    for phrase in describe_security_changes(result.get("security_changes") or {}):
        lines.append(f"  WARNING accounts {phrase}")
    if result.get("neutralised_tokens"):
        lines.append(f"  {result['neutralised_tokens']} mailed link(s) from the unsigned archive stored as used")
    if result.get("safety_backup"):
        lines.append(f"Safety backup: {result['safety_backup']} (restore it in replace mode to undo).")
    return lines


def register(group) -> None:
    """Add the restore commands to the `flask backup` group."""

    @group.command("restore")
    @click.argument("file")
    @click.option("--mode", type=click.Choice(MODES), required=True, help="merge keeps current rows; replace "
                  "makes the restored tables equal to the archive.")
    @click.option("--dry-run", is_flag=True, help="Show what would change, change nothing.")
    @click.option("--trust-unsigned", is_flag=True, help="Accept an archive not signed by this instance.")
    @click.option("--tables", default=None, help="Comma-separated tables to restore (default: all in the archive).")
    @click.option("--on-conflict", type=click.Choice(CONFLICT_POLICIES), default="skip", show_default=True,
                  help="Merge only: what to do with rows whose id already exists.")
    @click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
    @click.option("--json", "as_json", is_flag=True, help='Print {"restore": Result} (or {"preview": …}) as JSON.')
    @click.option("--progress", is_flag=True, help="Print progress lines on stderr.")
    def restore_command(file, mode, dry_run, trust_unsigned, tables, on_conflict, yes, as_json, progress):
        """Restore FILE (a listed backup's name or a path) in merge or replace mode."""
        options = RestoreOptions(mode=mode, tables=parse_tables(tables), on_conflict=on_conflict,
                                 dry_run=dry_run, trust_unsigned=trust_unsigned)
        if not (yes or dry_run):
            if not sys.stdin.isatty():
                raise click.UsageError("Add --yes to confirm the restore (or --dry-run to preview it).")
            click.confirm(f"Restore {file} in {mode} mode? A safety backup is taken first.", abort=True)
        options.validate()
        outcome = start_restore(cli_source(file), options, actor=CLI, wait=True,
                                progress=progress_printer(progress))
        result = outcome.get("preview") or outcome.get("restore")
        if as_json:
            click.echo(orjson.dumps(outcome, option=orjson.OPT_INDENT_2).decode())
            return
        for line in _describe(result, "Preview, nothing changed" if dry_run else "Restored"):
            click.echo(line)

    @group.command("verify")
    @click.argument("file")
    @click.option("--trust-unsigned", is_flag=True, help="Do not fail an archive for lacking this instance's "
                  "signature.")
    @click.option("--json", "as_json", is_flag=True, help='Print {"verification": {...}} as JSON.')
    def verify_command(file, trust_unsigned, as_json):
        """Check FILE's checksums and signature and test-restore it; exit status 1 when it is bad."""
        verification = verify_source(cli_source(file), actor=CLI, trust_unsigned=trust_unsigned)
        if as_json:
            click.echo(orjson.dumps({"verification": verification}, option=orjson.OPT_INDENT_2).decode())
        else:
            counts = ", ".join(f"{t} {n}" for t, n in verification["record_counts"].items())
            click.echo(f"{verification['filename']}: sha256 {verification['sha256']}, checksums "
                       f"{verification['checksums']}, signature {verification['signature']}"
                       + (f", test restore: {counts}" if counts else ""))
        if not verification["ok"]:
            raise click.ClickException(f"{verification['filename']} is bad: {verification['error']}")
        if not as_json:
            click.echo("OK")
