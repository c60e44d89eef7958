"""Entry point for `flask run`, the `flask` commands, WSGI servers (`gunicorn wsgi:app`) and Celery workers.

``wsgi.celery`` is the app's Celery instance: `celery -A wsgi:celery worker` runs the
jobs that an app with ``BACKUP_JOB_EXECUTOR=celery`` queues. It is made on first use,
so processes that never touch it do not import Celery.
"""
import gc
import sys

# Start-up creates what lives as long as the process (modules, the app, its extensions):
# the garbage collector would only walk it again and again (80 ms of every start here).
gc.disable()
try:
    from app import create_app
    from app.backup.jobs.executors import celery_of
    from config import ConfigError

    try:
        app = create_app()
    except ConfigError as exc:
        sys.exit(f"Configuration error: {exc}")
    # Frozen, it stays out of the collector's full passes, and out of the pass at exit,
    # which otherwise takes 0.2 s of every `flask` command here. (The recipe Python gives
    # for pre-forking servers: their workers keep sharing those pages with the parent.)
    gc.freeze()
finally:
    gc.enable()


def __getattr__(name):
    # PEP 562: ``wsgi.celery`` is built when first asked for (celery -A wsgi:celery).
    if name == "celery":
        return celery_of(app)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
