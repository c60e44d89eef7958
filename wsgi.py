"""Entry point for `flask run`, the `flask` commands and WSGI servers."""
import gc
import sys

from app import create_app
from config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    sys.exit(f"Configuration error: {exc}")

# What is loaded by now (modules, the app, its extensions) lives as long as the process.
# Frozen, the garbage collector's full passes skip it, and so does the pass at exit, which
# otherwise takes 0.2 s of every `flask` command here. (A pre-forking server's workers also
# keep sharing those pages with their parent.)
gc.freeze()
