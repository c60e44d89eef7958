"""`flask backup create|list|delete` (restore, verify and scheduling add their own commands).

Every failure is one line on stderr and exit status 1, never a traceback.
"""
from __future__ import annotations

import click
import orjson

from ..audit import CLI
from ..service import BackupService
from ..units import human_size
from . import BackupCommands, progress_printer

backup_cli = BackupCommands("backup", help="Create, list, verify, restore and prune backups.")


@backup_cli.command("create")
@click.option("--progress", is_flag=True, help="Print progress lines on stderr.")
def create_command(progress):
    """Make a backup now and print its filename."""
    job = BackupService().start_create("cli", None, wait=True, actor=CLI, progress=progress_printer(progress))
    click.echo(BackupService.job(job.id)["result"]["filename"])


@backup_cli.command("list")
@click.option("--json", "as_json", is_flag=True, help='Print {"backups": [...]} as JSON.')
def list_command(as_json):
    """List the backups, newest first."""
    backups = BackupService().list()
    if as_json:
        click.echo(orjson.dumps({"backups": backups}, option=orjson.OPT_INDENT_2).decode())
        return
    if not backups:
        click.echo("No backups yet.")
        return
    for b in backups:
        flags = ",".join(name for name, on in (("pinned", b["pinned"]), ("unsigned", not b["signed"]),
                                              ("verified", b["verified"] is True),
                                              ("FAILED-VERIFY", b["verified"] is False)) if on)
        click.echo(f"{b['filename']}  {b['created_at']}  {human_size(b['size_bytes']):>9}  "
                   f"{b['total_records']:>9} records  {b['trigger'] or '-':<11} {flags}".rstrip())


@backup_cli.command("delete")
@click.argument("filename")
def delete_command(filename):
    """Delete one backup."""
    deleted = BackupService().delete(filename, CLI)
    click.echo(f"Deleted {deleted}.")
