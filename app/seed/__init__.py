"""Deterministic demo data for the five CyberQuest tables (``flask seed-demo``).

Benchmarks compare backup tools on this data, so its shape is meant to be that of
a real installation: argon2id hashes of real length, long browser user agents,
IPv4 and IPv6 addresses, 64-hex tokens, multilingual contact messages with emoji,
quotes and newlines, nullable columns sometimes null, and timestamps spread over
the year before ``REFERENCE`` (a fixed date, so the output never depends on the clock).

* ``vocabulary``: the fixed word lists, names and browsers the rows are drawn from;
* ``text``: made-up contact-form messages;
* ``rows``: the pure generators, one per table: given a ``random.Random`` and the
  first id they yield batches of row dicts;
* ``writer``: ``seed_demo``, the split across tables and the writing (SQLAlchemy
  Core executemany, all tables in one transaction);
* ``command``: ``flask seed-demo``.
"""
