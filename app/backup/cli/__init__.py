"""The `flask backup` commands, and what they share: one line for every failure, the ``--progress`` lines."""
from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from ...errors import OneLineErrors


class BackupCommands(OneLineErrors, AppGroup):
    """The `flask backup` group: a subcommand's ``BackupError`` or database error is one line on stderr and
    exit status 1 (for cron's mail and for scripts), never a traceback (``OneLineErrors`` around the group's
    ``invoke``, which runs the subcommand)."""


def progress_printer(enabled: bool):
    """The progress callback of a command's ``--progress`` flag: one ``progress NN.N% message`` line on stderr
    per change (flushed at once, so a watching process sees where the command is), or None when not enabled."""
    if not enabled:
        return None
    last = {"line": None}

    def show(fraction: float, message: str) -> None:
        line = f"progress {fraction * 100:5.1f}% {message}"
        if line != last["line"]:
            last["line"] = line
            click.echo(line, err=True)
            sys.stderr.flush()

    return show
