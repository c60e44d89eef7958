"""Entry point for `flask run`, the `flask` commands and WSGI servers."""
import gc
import sys

# Start-up creates what lives as long as the process (modules, the app, its extensions):
# the garbage collector would only walk it again and again (80 ms of every start here).
gc.disable()
try:
    from app import create_app
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
