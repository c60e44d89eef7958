"""Work the app adds to every replace (and every overwriting merge), inside its transaction
(Discourse's ``after_restore_hook``).

The engine knows the data tables, not what the app keeps beside them. An app
whose own rows depend on the restored ones registers a hook with
``register_replace_hook``. At the start of each replace, once its checks passed
and before the current rows are deleted, and at the start of each merge with
``on_conflict=overwrite``, every hook is called as
``hook(connection, replaced, overwritten)``: ``connection`` is the restore's
``dialects.Dialect`` (``cursor``, ``q``, ``placeholder``, ``select_where_in``,
``delete_where_in``), ``replaced`` the names of the tables being replaced (empty in
a merge) and ``overwritten`` those whose rows a merge may overwrite (empty in a
replace). A hook returns None, or a callable the restore calls once every row of
the archive is in, before the commit; what either does is committed, or rolled
back, with the restore.
"""
from __future__ import annotations

from typing import Callable

AfterReplace = Callable[[], None]
ReplaceHook = Callable[[object, frozenset, frozenset], AfterReplace | None]

_EXTENSION = "backup_replace_hooks"


def register_replace_hook(app, hook: ReplaceHook) -> None:
    """Have every replace restore of ``app`` call ``hook`` (once, however often it is registered)."""
    hooks = app.extensions.setdefault(_EXTENSION, [])
    if hook not in hooks:
        hooks.append(hook)


def replace_hooks(app) -> tuple[ReplaceHook, ...]:
    """The hooks ``app`` registered, in the order it registered them."""
    return tuple(app.extensions.get(_EXTENSION, ()))
