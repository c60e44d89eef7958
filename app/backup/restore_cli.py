"""`flask backup restore` and `flask backup verify`."""


def register(group) -> None:
    """Add the restore commands to the `flask backup` group."""
