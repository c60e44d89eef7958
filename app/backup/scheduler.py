"""APScheduler wiring for scheduled backups."""


def start_for_app(app) -> None:
    """Start the in-process scheduler when this instance should run one."""
    return None
