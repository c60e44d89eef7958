"""The in-process scheduler: APScheduler started with the app, beating ``runner.tick`` each minute.

Whether a process runs one is decided by ``should_start`` (never in tests, in CLI
commands other than ``flask run``, or in the reloader's watcher process). Running
several is safe: the database decides who runs each slot (see ``runner``).
"""
from __future__ import annotations

import atexit
import logging
import os
from datetime import timedelta

import click
from flask.helpers import get_debug_flag

from ...models import utcnow
from ..jobs.lock import current_owner
from ..jobs.priority import lower_thread_priority
from .runner import tick

log = logging.getLogger(__name__)

EXTENSION_KEY = "backup_scheduler"
TICK_JOB_ID = "backup-schedule-tick"
STARTUP_JOB_ID = "backup-schedule-startup"
STARTUP_DELAY = timedelta(seconds=2)


def should_start(app) -> tuple[bool, str]:
    """Whether this process should run the in-process scheduler, and why (or why not).

    Off when ``SCHEDULER_ENABLED`` is False (tests), ``ENABLE_AUTO_BACKUP`` is false,
    the app is built for a CLI command other than ``flask run`` (``flask db upgrade``,
    ``flask backup run-scheduled``...), or this is the watcher process of the reloader.
    """
    if app.config.get("SCHEDULER_ENABLED") is False:
        return False, "SCHEDULER_ENABLED is False"
    if not app.config.get("ENABLE_AUTO_BACKUP", True):
        return False, "ENABLE_AUTO_BACKUP is false"
    if app.extensions.get(EXTENSION_KEY) is not None:
        return False, "already running for this app"
    # Flask loads the app inside the click context of the command being run: `flask run`
    # loads it in the run command itself, any other command while resolving its name
    # (or in its own context). A WSGI server or plain Python has no click context.
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        if ctx.command.name != "run":
            return False, "a CLI command other than `flask run`"
        if os.environ.get("WERKZEUG_RUN_MAIN") != "true":
            reload = ctx.params.get("reload")
            if reload is None:
                reload = get_debug_flag()
            if reload:
                return False, "the reloader's watcher process (its child serves and schedules)"
    return True, "serving"


def start_for_app(app):
    """Start the in-process scheduler when this instance should run one; returns it or None."""
    start, reason = should_start(app)
    if not start:
        log.debug("backup scheduler not started: %s", reason)
        return None
    # Imported only by a process that schedules: CLI commands, tests and cron runs never load APScheduler.
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.cron import CronTrigger

    # A due slot's backup runs in the tick's own thread (the thread executor waits for it there): the
    # pool's threads start BACKUP_JOB_NICE nicer, as every other background job's thread does.
    ticks = ThreadPoolExecutor(max_workers=2, pool_kwargs={
        "initializer": lower_thread_priority, "initargs": (app.config["BACKUP_JOB_NICE"],)})
    scheduler = BackgroundScheduler(timezone="UTC", daemon=True, executors={"default": ticks},
                                    job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 50})
    scheduler.add_job(tick, CronTrigger(second=0, timezone="UTC"), args=[app], id=TICK_JOB_ID,
                      replace_existing=True, name="scheduled backups: run the due slot")
    # One early beat, so a slot missed while the instance was down runs now, not at the next minute.
    scheduler.add_job(tick, "date", run_date=utcnow() + STARTUP_DELAY, args=[app], id=STARTUP_JOB_ID,
                      replace_existing=True, name="scheduled backups: catch up after start")
    scheduler.start()
    app.extensions[EXTENSION_KEY] = scheduler
    atexit.register(_shutdown, scheduler)
    log.info("backup scheduler started in %s", current_owner())
    return scheduler


def stop_for_app(app) -> None:
    """Stop this app's in-process scheduler, if it runs."""
    scheduler = app.extensions.pop(EXTENSION_KEY, None)
    if scheduler is not None:
        _shutdown(scheduler)


def _shutdown(scheduler) -> None:
    if scheduler.running:
        scheduler.shutdown(wait=False)
