"""`flask backup prune [--dry-run]` and `flask backup run-scheduled`.

Failures are one line on stderr and exit status 1 (click's ``ClickException``).
"""
from __future__ import annotations

import click
import orjson

from ...models import utcnow
from ..audit import CLI
from ..errors import database_message
from ..schedule import retention, runner as scheduler
from ..schedule.settings import load_settings


def _echo_json(data: dict) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def register(group) -> None:
    """Add the schedule commands to the `flask backup` group."""

    @group.command("prune")
    @click.option("--dry-run", is_flag=True, help="Only list what would be deleted.")
    @click.option("--json", "as_json", is_flag=True, help='Print {"dry_run", "deleted", "kept", "policy"} as JSON.')
    def prune_command(dry_run: bool, as_json: bool) -> None:
        """Apply the schedule's retention policy: delete the backups it does not keep."""
        policy = retention.policy_for(load_settings())
        result = retention.prune(policy, utcnow(), dry_run=dry_run, actor=CLI)
        if as_json:
            _echo_json(result.to_dict())
            return
        verb = "Would delete" if dry_run else "Deleted"
        for name in result.deleted:
            click.echo(f"{verb} {name}")
        summary = "would be deleted" if dry_run else "deleted"
        click.echo(f"{len(result.deleted)} backup(s) {summary}, {len(result.kept)} kept ({policy.describe()}).")

    @group.command("run-scheduled")
    @click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
    def run_scheduled_command(as_json: bool) -> None:
        """Run the schedule's due slot, if no instance has yet (for cron; safe to run anywhere, often)."""
        outcome = scheduler.run_scheduled()
        try:
            scheduler.alert_if_missed()
        except Exception as exc:  # the run's own outcome is what this command reports
            click.echo(f"Warning: could not check for a missed schedule: {database_message(exc)}", err=True)
        if as_json:
            _echo_json(outcome.to_dict())
        elif not outcome.failed:
            click.echo(_describe(outcome))
        if outcome.failed:
            # The run's own error when there is one (the outcome's message is "Failed: " and that error).
            reason = outcome.report.error if outcome.report is not None and outcome.report.error else outcome.message
            raise click.ClickException(f"The scheduled backup failed: {reason}")


def _describe(outcome: scheduler.SlotOutcome) -> str:
    slot = outcome.slot.strftime("%Y-%m-%d %H:%M UTC") if outcome.slot else None
    upcoming = outcome.next_run_at.strftime("%Y-%m-%d %H:%M UTC") if outcome.next_run_at else None
    if outcome.status == "succeeded":
        return f"Slot {slot}: {outcome.message}"
    if outcome.status == "not-due":
        return f"Nothing is due; the next run is at {upcoming}."
    if outcome.status == "taken":
        return f"Slot {slot} is already taken by another instance; nothing to do."
    if outcome.status == "deferred":
        return f"Slot {slot}: {outcome.message}"
    return outcome.message
