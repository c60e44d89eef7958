"""The fixed vocabulary of the demo data: browsers, names, domains, subjects, message text, emoji.

Pure data. What the seeded rows look like is tuned here (a new browser in the mix,
another script in the names); how rows are drawn from it is ``rows`` and ``text``.
"""
from __future__ import annotations

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
WEIGHTED_USER_AGENTS = [ua for ua, weight in USER_AGENTS for _ in range(weight)]

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
# Networks the IPv6 addresses come from (a few large ISPs' and hosters' /32s).
IPV6_PREFIXES = (0x2A01_04F8, 0x2A02_0908, 0x2001_0470, 0x2600_1700, 0x2A00_23C7, 0x2405_6580, 0x2001_4860)
