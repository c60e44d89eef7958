"""Deterministic demo data for the five CyberQuest tables (``flask seed-demo``).

Benchmarks compare backup tools on this data, so its shape is meant to be that of
a real installation: argon2id hashes of real length, long browser user agents,
IPv4 and IPv6 addresses, 64-hex tokens, multilingual contact messages with emoji,
quotes and newlines, nullable columns sometimes null, and timestamps spread over
the year before ``REFERENCE`` (a fixed date, so the output never depends on the clock).

The generators below are pure: given a ``random.Random`` and the first id they
yield batches of row dicts. ``seed_demo`` writes them with SQLAlchemy Core
executemany, all tables in one transaction.
"""
from __future__ import annotations

import base64
import contextlib
import functools
import ipaddress
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable, Iterator

import click
import sqlalchemy as sa

from .extensions import db

# Naive UTC: UTCDateTime takes naive values as UTC, and skipping its tz
# conversion keeps a million-row seed fast.
REFERENCE = datetime(2026, 1, 1)
YEAR_SECONDS = 365 * 24 * 3600
START = REFERENCE - timedelta(seconds=YEAR_SECONDS)
BATCH_SIZE = 10_000
SQLITE_CACHE_KIB = 64 * 1024

# Percent of the requested rows per table, in insert (foreign-key) order.
SHARES = (
    ("users", 10),
    ("login_attempts", 60),
    ("email_verifications", 10),
    ("contact_submissions", 10),
    ("password_reset_tokens", 10),
)

# Demo accounts get well-formed argon2id hashes (argon2-cffi's default parameters
# and lengths) of random bytes rather than of a password: each row is as unique
# as a real one, and no password logs in as a demo user.
ARGON2_PREFIX = "$argon2id$v=19$m=65536,t=3,p=4$"

# (user agent, weight): roughly the browser mix a public site sees. All are over
# 100 characters; desktop Firefox is left out because its UA is shorter than that.
USER_AGENTS = (
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/131.0.0.0 Safari/537.36", 30),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/130.0.0.0 Safari/537.36", 10),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/131.0.0.0 Safari/537.36", 10),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/131.0.0.0 Safari/537.36", 4),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0", 8),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/130.0.0.0 Safari/537.36 OPR/115.0.0.0", 2),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/18.1.1 Safari/605.1.15", 7),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/18.1.1 Mobile/15E148 Safari/604.1", 10),
    ("Mozilla/5.0 (iPad; CPU OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.7 Mobile/15E148 Safari/604.1", 2),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1", 3),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "FxiOS/132.1 Mobile/15E148 Safari/605.1.15", 1),
    ("Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/131.0.0.0 Mobile Safari/537.36", 9),
    ("Mozilla/5.0 (Linux; Android 14; SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) "
     "SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36", 2),
    ("Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/131.0.0.0 Safari/537.36", 1),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "HeadlessChrome/120.0.6099.109 Safari/537.36", 1),
)
# One entry per unit of weight: rng.choice on it is a weighted choice, and cheap.
_WEIGHTED_USER_AGENTS = [ua for ua, weight in USER_AGENTS for _ in range(weight)]

FIRST_NAMES = (
    "james", "mary", "robert", "patricia", "john", "jennifer", "michael", "linda", "david", "elizabeth",
    "william", "barbara", "richard", "susan", "joseph", "jessica", "thomas", "sarah", "charles", "karen",
    "daniel", "nancy", "matthew", "lisa", "anthony", "betty", "mark", "sandra", "paul", "ashley",
    "lucas", "emma", "noah", "olivia", "liam", "sophia", "mateo", "isabella", "hugo", "chloe",
    "yuki", "hiroshi", "wei", "mei", "jun", "min", "arjun", "priya", "omar", "fatima",
    "ivan", "olga", "lars", "ingrid", "pierre", "camille", "giulia", "marco", "ana", "joao",
)
LAST_NAMES = (
    "smith", "johnson", "williams", "brown", "jones", "garcia", "miller", "davis", "rodriguez", "martinez",
    "hernandez", "lopez", "gonzalez", "wilson", "anderson", "thomas", "taylor", "moore", "jackson", "martin",
    "lee", "perez", "thompson", "white", "harris", "sanchez", "clark", "ramirez", "lewis", "robinson",
    "mueller", "schmidt", "schneider", "dubois", "lefebvre", "rossi", "russo", "silva", "santos", "kowalski",
    "nowak", "novak", "tanaka", "suzuki", "sato", "wang", "li", "zhang", "chen", "kim",
    "park", "nguyen", "tran", "patel", "sharma", "khan", "ivanov", "petrov", "hansen", "johansson",
)
# Display names for contact submissions: accents, other scripts, apostrophes.
CONTACT_NAMES = (
    "José Núñez", "Zoë Müller", "François Lefèvre", "Ángela Pérez", "Søren Kierkegård", "Łukasz Wójcik",
    "Dvořák Antonín", "Björn Ångström", "Çağla Öztürk", "Mårten Håkansson", "Renée O'Connor",
    "Seán Ó Briain", "D'Arcy O'Neil", "Mary-Jane Watson", "佐藤 花子", "鈴木 一郎", "王芳", "李伟",
    "张伟", "김민준", "이서연", "Αλέξανδρος Παπαδόπουλος", "Дмитрий Иванов", "Ольга Смирнова",
    "محمد الأحمد", "Nguyễn Văn An", "Trần Thị Bích", "Priya Sharma", "Jean-Luc Picard", "Émilie Rousseau",
)
EMAIL_DOMAINS = (
    "example.com", "example.org", "example.net", "mail.example.com", "corp.example.net",
    "students.example.edu", "example.co.uk", "example.de", "example.fr", "example.jp",
)
GUESSED_LOGINS = (
    "admin", "root", "administrator", "test", "user", "guest", "info", "support", "oracle", "postgres",
    "admin@example.com", "webmaster", "demo", "ubuntu", "pi", "ftp", "backup", "sysadmin", "operator", "qa",
)

SUBJECTS = (
    "Question about my account", "Password reset not arriving", "Bug report: login page",
    "Feature request — dark mode", "Partnership inquiry", "Problème de connexion",
    "Consulta sobre la cuenta", "Frage zur Registrierung", "アカウントについて", "关于密码重置的问题",
    "Feedback 🎉", "Can't verify my e-mail", "\"Invalid token\" error", "Security disclosure",
    "Billing question", "Great challenge — thanks!", "Données personnelles (RGPD)", "계정 삭제 요청",
)
GREETINGS = (
    "Hello,", "Hi there,", "Dear CyberQuest team,", "Bonjour,", "Hola,", "Guten Tag,",
    "こんにちは、", "您好，", "안녕하세요,", "Hey 👋", "Good morning,",
)
SIGN_OFFS = ("Thanks,", "Best regards,", "Cheers,", "Cordialement,", "Saludos,", "Viele Grüße,", "よろしくお願いします。", "谢谢！", "—")
MESSAGE_PIECES = (
    "I tried to log in this morning but the page said \"Invalid credentials\" even though I'm sure the password is right.",
    "Could you tell me why my account was locked? I didn't get any e-mail about it.",
    "The verification link I received says it's expired — can you send a new one?",
    "Thanks for building this, it's been really useful for our team's training sessions! 🙏",
    "When I click \"Forgot password\" nothing happens on Safari, but it works in Chrome.",
    "Our security team would like to know how long you keep login logs and where they're stored.",
    "I think there's a typo on the pricing page: it says 'monthy' instead of 'monthly'.",
    "Is there an API we could use to export our users' progress? A CSV would be fine too.",
    "J'ai oublié mon mot de passe et je ne reçois pas l'e-mail de réinitialisation.",
    "Est-ce que vous prévoyez une version en français de la plateforme ? Ce serait génial.",
    "Hola, no puedo acceder a mi cuenta desde el móvil; la página se queda en blanco.",
    "¿Cuánto tiempo tarda en llegar el correo de verificación? Ya esperé más de una hora.",
    "Ich habe mich registriert, aber die Bestätigungs-E-Mail ist nie angekommen. Können Sie helfen?",
    "Die Seite lädt sehr langsam, besonders abends. Liegt das an meiner Verbindung?",
    "パスワードを忘れてしまいました。リセットの方法を教えていただけますか？",
    "ログインしようとすると「アカウントがロックされています」と表示されます。",
    "你好，我无法收到验证邮件，请帮我检查一下我的账户。",
    "这个平台非常好用，我们学校的学生都很喜欢！👍",
    "비밀번호를 재설정하려고 했는데 링크가 작동하지 않습니다.",
    "Спасибо за отличный сервис! Но у меня не получается войти в аккаунт.",
    "The 2FA prompt keeps looping 🔁 after I enter the code — I've tried three times now.",
    "We're a team of 25 students; is there a discount for schools? 🎓",
    "Love the new challenges 🔐🚀 but the \"Crypto 101\" one seems broken: the flag isn't accepted.",
    "My colleague's account shows my name in the header, which looks like a caching issue.",
    "Please delete my account and all data associated with it, as per GDPR article 17.",
    "I found what looks like an XSS in the profile page: entering <script>alert('x')</script> in the bio field renders it.",
    "Could you whitelist our office IP range? We're getting rate-limited during workshops.",
    "Thank you for the quick reply last time 😊 — the issue is fixed now.",
    "It's not urgent, but I'd like to change the e-mail address on my account.",
    "Error message: \"CSRF token missing or incorrect\" when submitting the contact form from Firefox.",
    "Merci beaucoup pour votre aide, l'équipe est très réactive ! 🇫🇷",
    "L'application est très bien faite, mais le mode sombre serait un plus. 🌙",
    "Is the platform available offline? Some of our labs don't have internet access.",
    "Our SSO provider sends the username in uppercase — does login treat 'JDoe' and 'jdoe' the same?",
    "I'm writing an article about security training platforms; could I interview someone from your team? ✍️",
)
# Words and characters for generated sentences, so that messages are not just
# a few dozen sentences repeated (which would compress far better than real text).
WORDS = tuple("""
a about access account after again all also always am an and any anyone app are as ask at back be because
been before browser but button by can can't cannot change check click code colleague company computer
confirm connection could course dashboard data day delete device did didn't do does don't done e-mail
error even every expired few field file find first fix for form from get got had has have help here how
I I'm I've if in information instead internet into is isn't issue it it's just know last later like link
lock locked log login long look lost made mail make many message minutes mobile month more morning my
need never new next no not nothing now of office on once one only open or other our out page password
people phone please problem profile question quite really receive received reset right said same screen
second see seems send sent server session should show since site so some someone still student submit
support sure team than thank thanks that the their them then there these they thing think this three
through time to today token tried try trying two under until update use user using very wait want was
we we're week were what when where which while who why will window with without won't work working would
yesterday you your firewall VPN certificate TLS OAuth API JSON timeout Chrome Firefox Safari Windows macOS
Android iOS Linux laptop router proxy cookie cache captcha verification challenge score leaderboard
workshop class teacher homework deadline invoice subscription plan upgrade downgrade refund receipt
contraseña sesión correo también después está página réinitialiser reçu déjà problème même très
voilà Passwort Anmeldung Schlüssel für über möchte können überprüfen año acción résumé naïve café
São Zürich Kraków Ærø façade coöperate piñata jalapeño smörgåsbord crème brûlée
""".split())
CJK_CHARACTERS = (
    "的一是不了人我在有他这中大来上个国到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都"
    "然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实"
    "回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东海口使教西再平真听世"
    "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをんアカウントパスワードログイン"
    "계정비밀번호로그인문제도와주세요감사합니다확인메일"
)
EMOJI = ("😊", "🙏", "👍", "🔐", "🚀", "🎉", "😅", "🤔", "❤️", "✅", "⚠️", "🐛", "📧", "💡", "🙂", "😡", "🔥", "👋")
MAX_MESSAGE_LENGTH = 2000
MIN_MESSAGE_LENGTH = 200
# Networks the IPv6 addresses come from (a few large ISPs' and hosters' /32s).
_IPV6_PREFIXES = (0x2A01_04F8, 0x2A02_0908, 0x2001_0470, 0x2600_1700, 0x2A00_23C7, 0x2405_6580, 0x2001_4860)


def split_rows(total: int) -> dict[str, int]:
    """Rows per table for ``total`` rows in all, by ``SHARES`` (largest remainder, exact sum).

    Ties go to the earlier table, so ``users`` never gets fewer rows than the
    tables that point at it: whenever any of them has rows, there are users.
    """
    counts = {name: total * percent // 100 for name, percent in SHARES}
    remainders = sorted(SHARES, key=lambda share: -(total * share[1] % 100))
    for name, _ in remainders[: total - sum(counts.values())]:
        counts[name] += 1
    return counts


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
    network = (rng.choice(_IPV6_PREFIXES) << 96) | (rng.getrandbits(32) << 64)
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
        user_agent = None if draw() < 0.04 else _WEIGHTED_USER_AGENTS[int(draw() * len(_WEIGHTED_USER_AGENTS))]
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


# Sentences are windows into these fixed streams: one random draw per sentence
# instead of one per word keeps a million-row seed fast, and windows starting
# anywhere in ~400 KB of text rarely repeat within a compressor's reach.
# Built on first use, not at import: every app start imports this module.
@functools.cache
def _text_streams() -> tuple[list[str], str]:
    words = random.Random(0).choices(WORDS, k=60_000)
    characters = "".join(random.Random(1).choices(CJK_CHARACTERS, k=60_000))
    return words, characters


def _sentence(rng: random.Random) -> str:
    """A made-up sentence: mostly English words, sometimes CJK, now and then quotes or an emoji."""
    word_stream, cjk_stream = _text_streams()
    if rng.random() < 0.1:
        start = rng.randrange(len(cjk_stream) - 40)
        sentence = cjk_stream[start:start + 8 + int(rng.random() * 33)] + rng.choice("。？！")
    else:
        start = rng.randrange(len(word_stream) - 24)
        words = word_stream[start:start + 5 + int(rng.random() * 20)]
        if rng.random() < 0.15:
            quoted = int(rng.random() * len(words))
            words[quoted] = '"' + words[quoted]
            words[-1] += '"'
        sentence = " ".join(words)
        sentence = sentence[0].upper() + sentence[1:] + rng.choice("..?!")
    if rng.random() < 0.12:
        sentence += " " + rng.choice(EMOJI)
    return sentence


def contact_message(rng: random.Random, name: str) -> str:
    """A contact-form message of 200–2,000 characters: greeting, multilingual paragraphs, sign-off."""
    greeting = rng.choice(GREETINGS)
    sign_off = f"\n\n{rng.choice(SIGN_OFFS)}\n{name}"
    room = MAX_MESSAGE_LENGTH - len(sign_off)
    # Skewed towards shorter messages, as real contact forms are.
    target = MIN_MESSAGE_LENGTH + int((room - MIN_MESSAGE_LENGTH) * rng.random() ** 1.5)
    parts = [greeting]
    length = len(greeting)
    separator = "\n\n"
    while length < target:
        piece = rng.choice(MESSAGE_PIECES) if rng.random() < 0.35 else _sentence(rng)
        if length + len(separator) + len(piece) > room:
            break  # already far past MIN_MESSAGE_LENGTH: no piece is that long
        parts += (separator, piece)
        length += len(separator) + len(piece)
        separator = "\n\n" if rng.random() < 0.2 else ("\n" if rng.random() < 0.1 else " ")
    parts.append(sign_off)
    return "".join(parts)


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


def _table_rng(seed: int, table: str, first_id: int) -> random.Random:
    # One stream per table and starting id: an empty database always gets the same
    # rows, and seeding again (ids further on) draws new tokens instead of clashing.
    return random.Random(f"cyberquest-demo:{seed}:{table}:{first_id}")


@contextlib.contextmanager
def _larger_sqlite_cache(conn):
    # SQLite's default 2 MB page cache makes the random-order index inserts
    # (tokens, IPs, names) re-read pages from the OS over and over: a million
    # rows spent a third of their time in system calls. Restored afterwards
    # because the connection goes back to the pool.
    if conn.dialect.name != "sqlite":
        yield
        return
    previous = conn.exec_driver_sql("PRAGMA cache_size").scalar()
    conn.exec_driver_sql(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
    conn.commit()
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA cache_size = {int(previous)}")
        conn.commit()


Progress = Callable[[str, int, int], None]


def seed_demo(rows: int, seed: int = 42, progress: Progress | None = None,
              batch_size: int = BATCH_SIZE) -> dict[str, int]:
    """Append ``rows`` demo rows in all to the five CyberQuest tables; returns rows per table.

    The split is ``SHARES`` (users 10%, login_attempts 60%, the other three 10%
    each, summing to exactly ``rows``). Ids continue after each table's current
    maximum, and foreign keys point at the users seeded in the same call. On an
    empty database the same ``rows`` and ``seed`` always give identical table
    contents. Everything is written in one transaction with Core executemany in
    batches of ``batch_size``; ``progress(table, done, total)`` is called after
    each batch. Needs an app context. Not meant for a live database: concurrent
    inserts could take the same ids.
    """
    counts = split_rows(rows)
    tables = db.metadata.tables
    done = {name: 0 for name in counts}

    def write(conn, table_name, batches):
        table = tables[table_name]
        for batch in batches:
            conn.execute(table.insert(), batch)
            done[table_name] += len(batch)
            if progress:
                progress(table_name, done[table_name], counts[table_name])

    with db.engine.connect() as conn, _larger_sqlite_cache(conn), conn.begin():
        first_ids = {
            name: (conn.execute(sa.select(sa.func.max(tables[name].c.id))).scalar() or 0) + 1
            for name in counts
        }

        def rng(name):
            return _table_rng(seed, name, first_ids[name])

        users_rng = rng("users")
        users = make_users(users_rng, first_ids["users"], counts["users"])
        write(conn, "users", user_batches(users_rng, users, batch_size))
        write(conn, "login_attempts", login_attempt_batches(
            rng("login_attempts"), first_ids["login_attempts"], counts["login_attempts"], users, batch_size))
        write(conn, "email_verifications", email_verification_batches(
            rng("email_verifications"), first_ids["email_verifications"], counts["email_verifications"],
            users, batch_size))
        write(conn, "contact_submissions", contact_submission_batches(
            rng("contact_submissions"), first_ids["contact_submissions"], counts["contact_submissions"],
            batch_size))
        write(conn, "password_reset_tokens", password_reset_token_batches(
            rng("password_reset_tokens"), first_ids["password_reset_tokens"], counts["password_reset_tokens"],
            users, batch_size))

        if conn.dialect.name == "postgresql":
            # Explicit ids do not move PostgreSQL's sequences; without this the
            # app's next insert would collide with a seeded row.
            for name, count in counts.items():
                if count:
                    conn.execute(sa.text("SELECT setval(pg_get_serial_sequence(:table, 'id'), :last)"),
                                 {"table": name, "last": first_ids[name] + count - 1})
    return counts


def register_seed_command(app) -> None:
    """Add ``flask seed-demo`` to the app's command line."""

    @app.cli.command("seed-demo")
    @click.option("--rows", type=click.IntRange(min=1), default=1000, show_default=True,
                  help="Rows to add, in all five tables together.")
    @click.option("--seed", type=int, default=42, show_default=True,
                  help="Random seed; the same rows and seed give the same data.")
    def seed_demo_command(rows, seed):
        """Fill the five CyberQuest tables with ROWS realistic demo rows in all.

        \b
        Split: users 10%, login_attempts 60%, email_verifications,
        contact_submissions and password_reset_tokens 10% each.

        Rows are APPENDED after whatever the tables already hold: ids continue
        from each table's current maximum, so running it again adds more. On an
        empty database the same --rows and --seed always give identical data.
        Timestamps fall in the year before 2026-01-01 UTC. Demo accounts have
        argon2id hashes of random bytes: no password logs in as them.
        For demo and benchmark databases, not a live one.
        """
        last_reported = {}

        def report(table, done, total):
            step = done * 10 // total
            if last_reported.get(table) != step:
                last_reported[table] = step
                click.echo(f"  {table}: {done}/{total}", err=True)

        started = time.monotonic()
        try:
            counts = seed_demo(rows, seed, progress=report)
        except sa.exc.SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise click.ClickException(f"Seeding failed, nothing was written: {reason}") from None
        summary = ", ".join(f"{name}={count}" for name, count in counts.items())
        click.echo(f"Seeded {rows} rows: {summary} ({time.monotonic() - started:.1f} s)")
