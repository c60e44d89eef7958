"""`flask backup rekey [--dry-run]`: every listed archive re-encrypted to the current BACKUP_ENCRYPTION_KEY.

One line per archive on stdout; any failure is one line on stderr and exit status 1.
"""
from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from ..rekey import ENCRYPTED, FAILED, REKEYED, rekey_archives


def register(group: AppGroup) -> None:
    """Add ``rekey`` to the ``flask backup`` group."""
    group.add_command(rekey_command)


@click.command("rekey")
@with_appcontext
@click.option("--dry-run", is_flag=True, help="Say what would be re-encrypted; change nothing.")
def rekey_command(dry_run):
    """Re-encrypt every listed archive to BACKUP_ENCRYPTION_KEY (old ones open with BACKUP_ENCRYPTION_OLD_KEYS)."""
    failed = 0
    for outcome in rekey_archives(current_app._get_current_object(), dry_run=dry_run):
        changes = outcome.action in (REKEYED, ENCRYPTED)
        action = f"would be {outcome.action}" if outcome.dry_run and changes else outcome.action
        click.echo(f"{outcome.filename}  {action}" + (f": {outcome.detail}" if outcome.detail else ""))
        failed += outcome.action == FAILED
    if failed:
        raise click.ClickException(f"{failed} archive(s) could not be re-encrypted and were left as they were; "
                                   "see the lines above.")
