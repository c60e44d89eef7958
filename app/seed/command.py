"""``flask seed-demo --rows N --seed S``: the command line of ``writer.seed_demo``."""
from __future__ import annotations

import time

import click
import sqlalchemy as sa

from ..errors import OneLineErrors
from .writer import seed_demo


def register_seed_command(app) -> None:
    """Add ``flask seed-demo`` to the app's command line."""

    @app.cli.command("seed-demo", cls=OneLineErrors)
    @click.option("--rows", type=click.IntRange(min=1), default=1000, show_default=True,
                  help="Rows to add, in all five tables together.")
    @click.option("--seed", type=int, default=42, show_default=True,
                  help="Random seed; the same rows and seed give the same data.")
    def seed_demo_command(rows, seed):
        """Fill the five CyberQuest tables with ROWS realistic demo rows in all.

        \b
        Split: users 10%, login_attempts 60%, email_verifications,
        contact_submissions and password_reset_tokens 10% each.

        Rows are APPENDED after whatever the tables already hold: ids continue
        from each table's current maximum, so running it again adds more. On an
        empty database the same --rows and --seed always give identical data.
        Timestamps fall in the year before 2026-01-01 UTC. Demo accounts have
        argon2id hashes of random bytes: no password logs in as them.
        For demo and benchmark databases, not a live one.
        """
        last_reported = {}

        def report(table, done, total):
            step = done * 10 // total
            if last_reported.get(table) != step:
                last_reported[table] = step
                click.echo(f"  {table}: {done}/{total}", err=True)

        started = time.monotonic()
        try:
            counts = seed_demo(rows, seed, progress=report)
        except sa.exc.SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise click.ClickException(f"Seeding failed, nothing was written: {reason}") from None
        summary = ", ".join(f"{name}={count}" for name, count in counts.items())
        click.echo(f"Seeded {rows} rows: {summary} ({time.monotonic() - started:.1f} s)")
