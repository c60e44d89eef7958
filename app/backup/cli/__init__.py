"""The `flask backup` commands, and what they share: the ``--progress`` lines on stderr."""
from __future__ import annotations

import sys

import click


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
