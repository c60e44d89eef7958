"""The demo rows of each of the five tables, drawn from a ``random.Random``: pure, no database.

Given a ``random.Random`` and the first id, each generator yields batches of row
dicts; the same stream always gives the same rows. Timestamps fall in the year
before ``REFERENCE`` (a fixed date, so the output never depends on the clock).
"""
from __future__ import annotations

import base64
import ipaddress
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Iterator

from .text import contact_message
from .vocabulary import (
    CONTACT_NAMES,
    EMAIL_DOMAINS,
    FIRST_NAMES,
    GUESSED_LOGINS,
    IPV6_PREFIXES,
    LAST_NAMES,
    SUBJECTS,
    WEIGHTED_USER_AGENTS,
)

# Naive UTC: UTCDateTime takes naive values as UTC, and skipping its tz
# conversion keeps a million-row seed fast.
REFERENCE = datetime(2026, 1, 1)
YEAR_SECONDS = 365 * 24 * 3600
START = REFERENCE - timedelta(seconds=YEAR_SECONDS)
BATCH_SIZE = 10_000

# Demo accounts get well-formed argon2id hashes (argon2-cffi's default parameters
# and lengths) of random bytes rather than of a password: each row is as unique
# as a real one, and no password logs in as a demo user.
ARGON2_PREFIX = "$argon2id$v=19$m=65536,t=3,p=4$"


@dataclass
class SeededUsers:
    """The users generated for this run, which the other tables refer to."""

    first_id: int
    usernames: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    created: list[int] = field(default_factory=list)  # seconds after START

    def __len__(self) -> int:
        return len(self.usernames)


def _at(seconds: int) -> datetime:
    return START + timedelta(seconds=seconds)


def _token(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


def _password_hash(rng: random.Random) -> str:
    salt = base64.b64encode(rng.randbytes(16)).rstrip(b"=").decode()
    digest = base64.b64encode(rng.randbytes(32)).rstrip(b"=").decode()
    return f"{ARGON2_PREFIX}{salt}${digest}"


def _ipv4(rng: random.Random) -> str:
    bits = rng.getrandbits(24)
    return f"{1 + int(rng.random() * 223)}.{bits >> 16}.{(bits >> 8) & 255}.{bits & 255}"


def _ipv6(rng: random.Random) -> str:
    network = (rng.choice(IPV6_PREFIXES) << 96) | (rng.getrandbits(32) << 64)
    # Half privacy addresses (random interface id), half servers and routers (::1, ::2a, ...).
    host = rng.getrandbits(64) if rng.random() < 0.5 else rng.randint(1, 0xFFF)
    return ipaddress.IPv6Address(network | host).compressed


def _ip(rng: random.Random) -> str:
    return _ipv6(rng) if rng.random() < 0.25 else _ipv4(rng)


def make_users(rng: random.Random, first_id: int, count: int) -> SeededUsers:
    """Usernames, e-mails and creation times of ``count`` users with ids from ``first_id``.

    Usernames and e-mails end in the user id after a digit-free stem, so they are
    unique among themselves and across repeated seeding.
    """
    users = SeededUsers(first_id)
    for user_id in range(first_id, first_id + count):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        style = rng.randrange(4)
        if style == 0:
            username = f"{first}.{last}{user_id}"
        elif style == 1:
            username = f"{first[0]}{last}{user_id}"
        elif style == 2:
            username = f"{first}_{last[0]}{user_id}"
        else:
            username = f"{last}{first}{user_id}"
        users.usernames.append(username)
        users.emails.append(f"{first}.{last}{user_id}@{rng.choice(EMAIL_DOMAINS)}")
        users.created.append(rng.randrange(YEAR_SECONDS))
    return users


def user_batches(rng: random.Random, users: SeededUsers, batch_size: int = BATCH_SIZE) -> Iterator[list[dict]]:
    """Rows of ``users``: unusable argon2id hashes, a few inactive or admin, a quarter never logged in."""
    batch = []
    for index, username in enumerate(users.usernames):
        created = users.created[index]
        last_login = None if rng.random() < 0.25 else _at(rng.randint(created, YEAR_SECONDS - 1))
        batch.append({
            "id": users.first_id + index,
            "username": username,
            "email": users.emails[index],
            "password_hash": _password_hash(rng),
            "is_active": rng.random() < 0.95,
            "is_admin": rng.random() < 0.005,
            "created_at": _at(created),
            "last_login": last_login,
        })
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def login_attempt_batches(rng: random.Random, first_id: int, count: int, users: SeededUsers,
                          batch_size: int = BATCH_SIZE) -> Iterator[list[dict]]:
    """Login attempts: mostly by seeded users (by name or e-mail), some guesses from a few attacking IPs."""
    attackers = [_ip(rng) for _ in range(200)]
    # This loop makes 60% of all rows: random() scaled by hand is several times
    # cheaper than randrange()/randint(), and a bias of 2**-53 does not matter here.
    draw = rng.random
    usernames, emails, created = users.usernames, users.emails, users.created
    user_count = len(users)
    batch = []
    for attempt_id in range(first_id, first_id + count):
        roll = draw()
        if user_count and roll < 0.85:
            index = int(draw() * user_count)
            login = usernames[index] if roll < 0.62 else emails[index]
            success = draw() < 0.8
            attempted = created[index] + int(draw() * (YEAR_SECONDS - created[index]))
        else:
            login = None if roll > 0.97 else GUESSED_LOGINS[int(draw() * len(GUESSED_LOGINS))]
            success = False
            attempted = int(draw() * YEAR_SECONDS)
        roll = draw()
        if roll < 0.04:
            ip = None
        elif not success and roll < 0.5:
            ip = attackers[int(draw() * len(attackers))]
        else:
            ip = _ip(rng)
        user_agent = None if draw() < 0.04 else WEIGHTED_USER_AGENTS[int(draw() * len(WEIGHTED_USER_AGENTS))]
        batch.append({
            "id": attempt_id,
            "ip_address": ip,
            "username_or_email": login,
            "success": success,
            "attempted_at": _at(attempted),
            "user_agent": user_agent,
        })
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def email_verification_batches(rng: random.Random, first_id: int, count: int, users: SeededUsers,
                               batch_size: int = BATCH_SIZE) -> Iterator[list[dict]]:
    """One verification per user, sent at sign-up (more rows become resends); most verified within a day."""
    batch = []
    for offset in range(count):
        index = offset if offset < len(users) else rng.randrange(len(users))
        created = min(users.created[index] + rng.randint(0, 5), YEAR_SECONDS - 1)
        verified = None
        if rng.random() < 0.85:
            verified = created + rng.randint(20, 24 * 3600)
            if verified >= YEAR_SECONDS:
                verified = None
        batch.append({
            "id": first_id + offset,
            "user_id": users.first_id + index,
            "email": users.emails[index],
            "token": _token(rng),
            "created_at": _at(created),
            "expires_at": _at(created + 24 * 3600),
            "verified_at": None if verified is None else _at(verified),
            "is_verified": verified is not None,
        })
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def contact_submission_batches(rng: random.Random, first_id: int, count: int,
                               batch_size: int = BATCH_SIZE) -> Iterator[list[dict]]:
    """Contact submissions from people all over the world; a fifth without a subject."""
    batch = []
    for submission_id in range(first_id, first_id + count):
        name = rng.choice(CONTACT_NAMES)
        email = f"{rng.choice(FIRST_NAMES)}.{rng.choice(LAST_NAMES)}{rng.randint(1, 999)}@{rng.choice(EMAIL_DOMAINS)}"
        batch.append({
            "id": submission_id,
            "name": name,
            "email": email,
            "subject": None if rng.random() < 0.2 else rng.choice(SUBJECTS),
            "message": contact_message(rng, name),
            "created_at": _at(rng.randrange(YEAR_SECONDS)),
            "is_read": rng.random() < 0.6,
        })
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def password_reset_token_batches(rng: random.Random, first_id: int, count: int, users: SeededUsers,
                                 batch_size: int = BATCH_SIZE) -> Iterator[list[dict]]:
    """Reset tokens of random seeded users, valid one hour; about 40% used (and then inactive)."""
    batch = []
    for token_id in range(first_id, first_id + count):
        index = rng.randrange(len(users))
        created = rng.randint(users.created[index], YEAR_SECONDS - 1)
        used = None
        if rng.random() < 0.4:
            used = created + rng.randint(30, 3600)
            if used >= YEAR_SECONDS:
                used = None
        batch.append({
            "id": token_id,
            "user_id": users.first_id + index,
            "token": _token(rng),
            "created_at": _at(created),
            "expires_at": _at(created + 3600),
            "is_active": used is None,
            "used_at": None if used is None else _at(used),
        })
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch
