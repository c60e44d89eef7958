"""Helpers shared by the tests (fixtures live in the conftest.py files, helpers here, each once).

- ``app``: test settings, a migrated app, the test passwords, row counts.
- ``services``: the database servers (throwaway databases, loud skips) and free ports.
- ``processes``: the repository root, the environment of a ``flask`` child process, starting one, its progress lines.
- ``interrupting``: seeded points spread over a run, killing a child at one, what the next start finds.
- ``proxy``: a TCP proxy that drops the connection after N bytes (a store lost mid-upload).
- ``web``: logging in through the real form, CSRF tokens, flashes, API-token clients, waiting for a job.
- ``mail``: pointing an app's mail at the test SMTP server and reading what it received.
- ``backup``: sample rows, reading archives, the database as plain rows.
- ``archives``: hand-built archives (ours, original CyberQuest ones, broken ones) and database snapshots.
- ``restoring``: driving restores as a script does, listing and creating backups.
- ``schedule``: backups "from the past" and saved schedules, for the schedule tests.
- ``browser``: what the browser tests do on a page (log in, read tables).
"""
