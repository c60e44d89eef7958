"""`flask backup prune` and `flask backup run-scheduled`."""


def register(group) -> None:
    """Add the schedule commands to the `flask backup` group."""
