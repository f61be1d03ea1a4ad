"""Fill the database with realistic, deterministic demo data.

    python manage.py seed_demo --users 500 --customers 5000 --orders 20000 --events 60000 --seed 42

The same --seed and --now give the same rows (ids included, after --force or on an
empty database), except for secret material: password hashes and session keys are
random on every run, so knowing the seed never yields a login. With the defaults
the database takes a little over 50 MB on disk.

Idempotent: when customers or orders already exist it does nothing, unless --force,
which TRUNCATEs every table it fills (users, profiles, sessions, admin log, audit
events, customers, orders) and seeds again. --force is meant for lab databases.

Known users (created only when their password variable is set, read from the
process environment or the env file):
    demo   password from SEED_DEMO_PASSWORD
    admin  password from SEED_ADMIN_PASSWORD (superuser)
"""

import datetime as dt
import random
import secrets
import time
import uuid
from decimal import Decimal

from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher, make_password
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from accounts.models import Profile
from audit.models import Event
from orders.models import Customer, Order, OrderLine

BATCH = 2000
SPAN_SECONDS = 730 * 24 * 3600  # two years
CENT = Decimal("0.01")

# (display, ascii) pairs: the ASCII form builds usernames and e-mail addresses.
FIRST_NAMES = [
    ("Anna", "anna"), ("José", "jose"), ("Zoë", "zoe"), ("Łukasz", "lukasz"), ("Søren", "soren"),
    ("Ömer", "omer"), ("François", "francois"), ("Björn", "bjorn"), ("Inès", "ines"), ("Chloé", "chloe"),
    ("Mateo", "mateo"), ("Olivia", "olivia"), ("Noah", "noah"), ("Amélie", "amelie"), ("Jürgen", "jurgen"),
    ("Siobhán", "siobhan"), ("Nuno", "nuno"), ("Ayşe", "ayse"), ("Dvořák", "dvorak"), ("Emma", "emma"),
    ("Liam", "liam"), ("Sofía", "sofia"), ("Mikael", "mikael"), ("Ngozi", "ngozi"), ("Priya", "priya"),
    ("Arjun", "arjun"), ("Fatima", "fatima"), ("Yusuf", "yusuf"), ("Hana", "hana"), ("Kenji", "kenji"),
    ("陽翔", "haruto"), ("結衣", "yui"), ("伟", "wei"), ("芳", "fang"), ("민준", "minjun"), ("서연", "seoyeon"),
    ("Αλέξανδρος", "alexandros"), ("Ελένη", "eleni"), ("Олена", "olena"), ("Дмитрий", "dmitriy"),
    ("Thảo", "thao"), ("Minh", "minh"), ("Oğuz", "oguz"), ("Renée", "renee"), ("Maëlle", "maelle"),
]
LAST_NAMES = [
    ("Müller", "muller"), ("García", "garcia"), ("Nowak", "nowak"), ("Johansson", "johansson"),
    ("Dubois", "dubois"), ("Rossi", "rossi"), ("Smith", "smith"), ("O'Brien", "obrien"), ("Kowalczyk", "kowalczyk"),
    ("Yılmaz", "yilmaz"), ("Novák", "novak"), ("Fernández", "fernandez"), ("Jensen", "jensen"), ("Silva", "silva"),
    ("Okafor", "okafor"), ("Patel", "patel"), ("Khan", "khan"), ("Haddad", "haddad"), ("Schröder", "schroder"),
    ("Lefèvre", "lefevre"), ("Van der Berg", "vanderberg"), ("Nguyễn", "nguyen"), ("Trần", "tran"),
    ("佐藤", "sato"), ("鈴木", "suzuki"), ("高橋", "takahashi"), ("王", "wang"), ("李", "li"), ("张", "zhang"),
    ("김", "kim"), ("박", "park"), ("Παπαδόπουλος", "papadopoulos"), ("Шевченко", "shevchenko"),
    ("Иванов", "ivanov"), ("Ó Súilleabháin", "osullivan"), ("Åberg", "aberg"), ("Þórsson", "thorsson"),
]
DOMAINS = ["example.com", "example.org", "example.net", "mail.example", "shop.example", "corp.example"]
# (country, currency, weight)
COUNTRIES = [
    ("DE", "EUR", 18), ("FR", "EUR", 12), ("ES", "EUR", 8), ("IT", "EUR", 7), ("NL", "EUR", 5), ("PL", "PLN", 5),
    ("GB", "GBP", 10), ("US", "USD", 14), ("CA", "CAD", 3), ("SE", "SEK", 3), ("JP", "JPY", 5), ("KR", "KRW", 2),
    ("CN", "CNY", 2), ("TR", "TRY", 2), ("GR", "EUR", 1), ("UA", "UAH", 1), ("VN", "VND", 1), ("BR", "BRL", 1),
]
# Rough multiplier from a EUR catalogue price.
FX = {"EUR": "1", "USD": "1.08", "GBP": "0.85", "PLN": "4.3", "CAD": "1.47", "SEK": "11.4", "JPY": "162",
      "KRW": "1450", "CNY": "7.8", "TRY": "35", "UAH": "44", "VND": "27000", "BRL": "5.9"}
WHOLE_UNIT_CURRENCIES = {"JPY", "KRW", "VND"}
TIMEZONES = ["Europe/Berlin", "Europe/Paris", "Europe/London", "America/New_York", "America/Los_Angeles",
             "Asia/Tokyo", "Asia/Seoul", "Asia/Shanghai", "Europe/Istanbul", "Europe/Kyiv", "UTC", "Europe/Madrid"]
CITIES = ["Berlin", "München", "Paris", "Lyon", "Madrid", "Sevilla", "Roma", "Amsterdam", "Kraków", "London",
          "New York", "Toronto", "Göteborg", "東京", "大阪", "서울", "上海", "İstanbul", "Αθήνα", "Київ", "Hà Nội",
          "São Paulo"]
STREETS = ["Hauptstraße", "Rue de la Paix", "Calle Mayor", "Via Roma", "Baker Street", "ul. Floriańska",
           "Drottninggatan", "銀座通り", "Nanjing Road", "Strandvejen", "İstiklal Caddesi", "Οδός Ερμού",
           "вулиця Хрещатик", "Phố Huế", "Avenida Paulista", "Main Street"]
LANGUAGES = ["de-DE,de;q=0.9,en;q=0.8", "fr-FR,fr;q=0.9", "en-GB,en;q=0.9", "en-US,en;q=0.9", "ja-JP,ja;q=0.9",
             "ko-KR,ko;q=0.9,en;q=0.5", "zh-CN,zh;q=0.9", "tr-TR,tr;q=0.9", "uk-UA,uk;q=0.9,ru;q=0.5",
             "es-ES,es;q=0.9", "el-GR,el;q=0.9"]
ERROR_MESSAGES = ["Validation failed: quantity must be positive", "Champ obligatoire manquant : adresse",
                  "Ungültige Postleitzahl", "在庫が不足しています", "Permission denied", "Order is locked for export",
                  "Conflicting update, retry 🔁", "Upstream payment provider timeout"]
NOTES = [
    "Please deliver after 6 pm.",
    "Leave the parcel with the neighbour at no. 12 🙏",
    "Livraison à l'accueil, merci !",
    "Bitte beim Nachbarn abgeben, falls niemand öffnet.",
    "Entregar en la portería, gracias.",
    "お届けは午前中にお願いします。",
    "请放在门口，谢谢。",
    "경비실에 맡겨 주세요.",
    "Gift wrap please 🎁 — it's for my sister's birthday 🎂",
    "Customer called twice about delivery time ☎️",
    "Fragile: glass items ⚠️",
    "Доставка после 18:00, пожалуйста.",
    "Παρακαλώ καλέστε πριν την παράδοση.",
    "Giao hàng giờ hành chính.",
    "Kapıcıya bırakabilirsiniz.",
    "Invoice must show VAT number DE 123 456 789.",
    "Repeat order — same as last month 🔁",
    "Express shipping requested 🚚💨",
]
USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36",
    "SampleShop-iOS/4.12.1 (iPhone15,2; iOS 17.5)",
    "SampleShop-Android/4.11.0 (Pixel 7; Android 14)",
    "python-requests/2.32.3",
    "curl/8.8.0",
]
API_PATHS = ["/api/v1/orders/", "/api/v1/orders/{id}/", "/api/v1/customers/", "/api/v1/customers/{id}/",
             "/api/v1/products/", "/api/v1/search/", "/api/v1/cart/", "/api/v1/checkout/"]
PRODUCT_WORDS = ["Mug", "Notebook", "Lamp", "Backpack", "Tea", "Coffee", "Scarf", "Poster", "Cable", "Charger",
                 "Headphones", "Bottle", "Pen", "Socks", "Puzzle", "Candle", "Plant pot", "Umbrella"]
# (action, weight)
ACTIONS = [
    ("api.call", 30), ("order.created", 8), ("order.paid", 7), ("order.shipped", 6), ("order.refunded", 1),
    ("order.cancelled", 2), ("login", 12), ("logout", 6), ("login_failed", 5), ("profile.updated", 5),
    ("password.changed", 1), ("customer.created", 4), ("customer.updated", 3), ("export.requested", 2),
    ("heartbeat", 5), ("permission.changed", 1), ("session.expired", 2),
]


class Seeder:
    """Builds the rows. Every random choice goes through one seeded Random."""

    def __init__(self, seed, now):
        self.rng = random.Random(seed)
        self.now = now
        self.country_weights = [weight for _, _, weight in COUNTRIES]
        self.action_names = [name for name, _ in ACTIONS]
        self.action_weights = [weight for _, weight in ACTIONS]
        self.catalogue = self._catalogue()

    # -- helpers -------------------------------------------------------------------------------------------------

    def past(self, max_seconds=SPAN_SECONDS, recent_bias=1.0):
        """A moment before `now`; recent_bias > 1 puts more of them close to now (growth)."""
        return self.now - dt.timedelta(seconds=int(max_seconds * self.rng.random() ** recent_bias))

    def between(self, start, end):
        seconds = max(0, int((end - start).total_seconds()))
        return start + dt.timedelta(seconds=self.rng.randint(0, seconds))

    def person(self):
        first = self.rng.choice(FIRST_NAMES)
        last = self.rng.choice(LAST_NAMES)
        return first, last

    def uuid(self):
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def ip(self):
        roll = self.rng.random()
        if roll < 0.15:
            return "2001:db8:{:x}:{:x}::{:x}".format(self.rng.randrange(65536), self.rng.randrange(65536),
                                                     self.rng.randrange(1, 65536))
        if roll < 0.30:
            return "10.{}.{}.{}".format(self.rng.randrange(256), self.rng.randrange(256), self.rng.randrange(1, 255))
        prefix = self.rng.choice(["192.0.2", "198.51.100", "203.0.113"])
        return f"{prefix}.{self.rng.randrange(1, 255)}"

    def _catalogue(self):
        items = []
        for index in range(300):
            word = PRODUCT_WORDS[index % len(PRODUCT_WORDS)]
            sku = "{}-{:04d}".format(word[:3].upper(), 1000 + index * 7)
            price = Decimal(self.rng.randint(199, 18999)) / 100
            items.append((sku, word, price))
        return items

    def price_in(self, eur_price, currency):
        value = eur_price * Decimal(FX[currency])
        if currency in WHOLE_UNIT_CURRENCIES:
            return value.quantize(Decimal("1")).quantize(CENT)
        return value.quantize(CENT)

    # -- users ---------------------------------------------------------------------------------------------------

    def users(self, count, taken):
        user_model = get_user_model()
        hasher = PBKDF2PasswordHasher()
        users, profiles = [], []
        seen = set(taken)
        for index in range(count):
            first, last = self.person()
            username = f"{first[1]}.{last[1]}"
            if username in seen:
                username = f"{username}{index}"
            seen.add(username)
            joined = self.past(recent_bias=0.8)
            never_logged_in = self.rng.random() < 0.15
            last_login = None if never_logged_in else self.between(joined, self.now)
            if self.rng.random() < 0.08:
                password = make_password(None)
            else:
                # A random, unknown password with a cheap iteration count: realistic rows, fast seeding.
                # Django upgrades such a hash to its default cost at the user's next login.
                password = hasher.encode(secrets.token_urlsafe(18), hasher.salt(), iterations=5000)
            users.append(user_model(
                username=username,
                first_name=first[0],
                last_name=last[0],
                email=f"{username}@{self.rng.choice(DOMAINS)}",
                password=password,
                is_staff=self.rng.random() < 0.03,
                is_active=self.rng.random() < 0.95,
                date_joined=joined,
                last_login=last_login,
            ))
        user_model.objects.bulk_create(users, batch_size=BATCH)
        for user in users:
            profiles.append(self.profile_for(user))
        Profile.objects.bulk_create(profiles, batch_size=BATCH)
        return users

    def profile_for(self, user):
        prefs = {"language": self.rng.choice(["en", "de", "fr", "es", "ja", "ko", "zh-hans", "uk", "el", "tr"]),
                 "theme": self.rng.choice(["light", "dark", "system"])}
        if self.rng.random() < 0.6:
            prefs["notifications"] = {
                "email": self.rng.random() < 0.7,
                "sms": self.rng.random() < 0.2,
                "digest": self.rng.choice(["daily", "weekly", "never"]),
            }
        if self.rng.random() < 0.3:
            prefs["dashboard"] = {"widgets": self.rng.sample(["orders", "revenue", "returns", "stock", "alerts"], 3),
                                  "refresh_seconds": self.rng.choice([30, 60, 300])}
        if self.rng.random() < 0.1:
            prefs["beta_features"] = []
        display = f"{user.first_name} {user.last_name}"
        if self.rng.random() < 0.05:
            display += " " + self.rng.choice(["🌻", "🚀", "☕", "🎧"])
        return Profile(user=user, display_name=display, preferences=prefs, timezone=self.rng.choice(TIMEZONES))

    def known_user(self, username, password, superuser):
        user_model = get_user_model()
        user, _ = user_model.objects.update_or_create(
            username=username,
            defaults={
                "email": f"{username}@example.com",
                "first_name": username.capitalize(),
                "is_staff": superuser,
                "is_superuser": superuser,
                "is_active": True,
                "password": make_password(password),
            },
        )
        Profile.objects.update_or_create(
            user=user, defaults={"display_name": f"{username.capitalize()} User", "preferences": {"seeded": True}}
        )
        return user

    def sessions(self, users):
        """Database sessions for about half of the users, some still valid, most expired."""
        backend = "django.contrib.auth.backends.ModelBackend"
        rows = []
        for user in users:
            if not user.is_active or user.last_login is None or self.rng.random() > 0.6:
                continue
            for _ in range(self.rng.choice([1, 1, 2, 3, 5, 8])):
                data = {"_auth_user_id": str(user.pk), "_auth_user_backend": backend,
                        "_auth_user_hash": user.get_session_auth_hash()}
                if self.rng.random() < 0.3:
                    data["cart"] = [{"sku": sku, "qty": self.rng.randint(1, 3)}
                                    for sku, _, _ in self.rng.sample(self.catalogue, self.rng.randint(1, 4))]
                if self.rng.random() < 0.2:
                    data["django_timezone"] = self.rng.choice(TIMEZONES)
                if self.rng.random() < 0.25:
                    expires = self.now + dt.timedelta(seconds=self.rng.randint(3600, 14 * 86400))
                else:
                    expires = self.past(max_seconds=180 * 86400)
                # The key is the cookie value: always random, never derived from the seed.
                rows.append(Session(session_key=secrets.token_hex(16), session_data=SessionStore().encode(data),
                                    expire_date=expires))
        Session.objects.bulk_create(rows, batch_size=BATCH)
        return len(rows)

    # -- customers and orders ------------------------------------------------------------------------------------

    def customers(self, count):
        rows = []
        for index in range(count):
            first, last = self.person()
            country, _, _ = self.rng.choices(COUNTRIES, weights=self.country_weights)[0]
            rows.append(Customer(
                name=f"{first[0]} {last[0]}",
                email=f"{first[1]}.{last[1]}.{index + 1}@{self.rng.choice(DOMAINS)}",
                country=country,
                created_at=self.past(recent_bias=0.9),
            ))
        Customer.objects.bulk_create(rows, batch_size=BATCH)
        return rows

    def status_for(self, age):
        days = age.total_seconds() / 86400
        roll = self.rng.random()
        if days < 2:
            return "pending" if roll < 0.6 else "paid"
        if days < 10:
            return "paid" if roll < 0.3 else ("shipped" if roll < 0.9 else "cancelled")
        if roll < 0.82:
            return "delivered"
        if roll < 0.91:
            return "cancelled"
        if roll < 0.97:
            return "refunded"
        return "shipped"

    def order_metadata(self, customer, lines):
        meta = {"channel": self.rng.choice(["web", "web", "web", "ios", "android", "phone"]),
                "items_count": sum(quantity for _, quantity, _ in lines)}
        if self.rng.random() < 0.4:
            meta["utm"] = {"source": self.rng.choice(["newsletter", "google", "instagram", "partner"]),
                           "medium": self.rng.choice(["email", "cpc", "social", "referral"]),
                           "campaign": self.rng.choice(["spring-sale", "black-friday", "launch-2024", "loyalty"])}
        if self.rng.random() < 0.15:
            meta["coupon"] = self.rng.choice(["WELCOME10", "SPRING15", "FREESHIP", "VIP20"])
        if self.rng.random() < 0.1:
            meta["gift"] = {"wrap": True, "message": self.rng.choice(["Alles Gute! 🎉", "Joyeux anniversaire",
                                                                      "おめでとう", "Happy holidays ❄️"])}
        meta["shipping"] = {"method": self.rng.choice(["standard", "express", "pickup"]),
                            "address": {"line1": f"{self.rng.choice(STREETS)} {self.rng.randint(1, 240)}",
                                        "city": self.rng.choice(CITIES), "country": customer.country,
                                        "postcode": f"{self.rng.randint(1000, 99999):05d}"}}
        if self.rng.random() < 0.2:
            meta["ab_tests"] = {"checkout_v2": self.rng.choice("AB"), "free_shipping_banner": self.rng.random() < 0.5}
        if self.rng.random() < 0.05:
            meta["fraud_score"] = round(self.rng.random(), 3)
        return meta

    def orders(self, count, customers):
        currency_of = {code: currency for code, currency, _ in COUNTRIES}
        made = 0
        while made < count:
            size = min(BATCH, count - made)
            orders, pending_lines = [], []
            for _ in range(size):
                # A few customers order often, most rarely.
                customer = customers[int(len(customers) * self.rng.random() ** 2)]
                created = self.between(customer.created_at, self.now)
                currency = currency_of[customer.country]
                lines = []
                for sku, _, price in self.rng.sample(self.catalogue, self.rng.choices([1, 2, 3, 4, 5, 6],
                                                                                       [25, 25, 20, 15, 10, 5])[0]):
                    lines.append((sku, self.rng.choices([1, 1, 1, 2, 2, 3, 5, 10])[0], self.price_in(price, currency)))
                total = sum((quantity * unit for _, quantity, unit in lines), Decimal("0.00"))
                notes = ""
                if self.rng.random() < 0.35:
                    notes = self.rng.choice(NOTES)
                    if self.rng.random() < 0.2:
                        notes += "\n" + self.rng.choice(NOTES)
                orders.append(Order(customer=customer, status=self.status_for(self.now - created), total=total,
                                    currency=currency, created_at=created, notes=notes,
                                    metadata=self.order_metadata(customer, lines)))
                pending_lines.append(lines)
            Order.objects.bulk_create(orders)
            line_rows = [OrderLine(order=order, sku=sku, quantity=quantity, unit_price=unit)
                         for order, lines in zip(orders, pending_lines) for sku, quantity, unit in lines]
            OrderLine.objects.bulk_create(line_rows, batch_size=BATCH)
            made += size
        return made

    # -- audit events --------------------------------------------------------------------------------------------

    def event_payload(self, action, actor):
        rng = self.rng
        if action == "api.call":
            path = rng.choice(API_PATHS).format(id=rng.randint(1, 50000))
            payload = {"method": rng.choices(["GET", "POST", "PATCH", "DELETE"], [70, 15, 10, 5])[0], "path": path,
                       "status": rng.choices([200, 201, 204, 400, 403, 404, 409, 500], [70, 8, 5, 5, 3, 5, 2, 2])[0],
                       "duration_ms": round(rng.lognormvariate(3.5, 0.8), 2),
                       "request_id": self.uuid(),
                       "response_bytes": rng.randint(120, 250000)}
            if payload["status"] >= 400:
                payload["error"] = {"code": f"E{payload['status']}{rng.randint(10, 99)}",
                                    "message": rng.choice(ERROR_MESSAGES)}
            if rng.random() < 0.6:
                payload["query"] = {"page": rng.randint(1, 40), "page_size": rng.choice([20, 50, 100]),
                                    "ordering": rng.choice(["-created_at", "total", "status"])}
            if rng.random() < 0.3:
                payload["client"] = {"version": f"4.{rng.randint(0, 12)}.{rng.randint(0, 9)}",
                                     "platform": rng.choice(["ios", "android", "web"]),
                                     "locale": rng.choice(["de-DE", "fr-FR", "ja-JP", "en-US", "ko-KR", "tr-TR"])}
            return f"api:{path}", payload
        if action.startswith("order."):
            order_id = rng.randint(1, 20000)
            lines = [{"sku": sku, "qty": rng.randint(1, 3), "title": title}
                     for sku, title, _ in rng.sample(self.catalogue, rng.randint(1, 5))]
            payload = {"order_id": order_id, "status": action.split(".", 1)[1], "lines": lines,
                       "total": str(Decimal(rng.randint(500, 90000)) / 100),
                       "currency": rng.choice(["EUR", "EUR", "USD", "GBP", "JPY"])}
            if action == "order.refunded":
                payload["reason"] = rng.choice(["damaged", "late delivery", "wrong size", "produit défectueux",
                                                "サイズ違い"])
            if action == "order.shipped":
                payload["carrier"] = {"name": rng.choice(["DHL", "UPS", "La Poste", "Yamato"]),
                                      "tracking": f"TRK{rng.randint(10**9, 10**10 - 1)}"}
            return f"order:{order_id}", payload
        if action in ("login", "logout", "session.expired"):
            payload = {"session_age_s": rng.randint(5, 14 * 86400)} if action != "login" else {
                "method": rng.choices(["password", "sso", "remember_me"], [70, 20, 10])[0],
                "mfa": rng.random() < 0.4}
            return f"user:{actor.pk}" if actor else "", payload
        if action == "login_failed":
            username = actor.username if actor else rng.choice(["admin", "root", "test", "guest", "oracle", "info"])
            return f"username:{username}", {"username": username,
                                            "reason": rng.choice(["bad_password", "unknown_user", "inactive",
                                                                  "rate_limited"]),
                                            "attempt": rng.randint(1, 8)}
        if action == "profile.updated":
            field, choices = rng.choice([("timezone", TIMEZONES), ("preferences.theme", ["light", "dark", "system"]),
                                         ("preferences.language", ["en", "de", "fr", "ja", "ko", "uk"]),
                                         ("display_name", [f"{a[0]} {b[0]}" for a, b in zip(FIRST_NAMES, LAST_NAMES)])])
            return f"user:{actor.pk}" if actor else "", {"changed": {field: rng.sample(choices, 2)},
                                                         "via": rng.choice(["web", "ios", "android"])}
        if action == "password.changed":
            return f"user:{actor.pk}" if actor else "", {"method": rng.choice(["self_service", "admin_reset",
                                                                                 "reset_link"])}
        if action.startswith("customer."):
            customer_id = rng.randint(1, 5000)
            return f"customer:{customer_id}", {"customer_id": customer_id,
                                               "fields": rng.sample(["name", "email", "country", "phone",
                                                                     "address"], rng.randint(1, 3)),
                                               "source": rng.choice(["admin", "api", "import"])}
        if action == "export.requested":
            start = self.past().date()
            return "export:orders", {"format": rng.choice(["csv", "xlsx", "json"]),
                                     "filters": {"status": rng.sample(["paid", "shipped", "delivered"], 2),
                                                 "from": start.isoformat(),
                                                 "to": (start + dt.timedelta(days=rng.randint(7, 90))).isoformat()},
                                     "rows": rng.randint(10, 20000)}
        if action == "heartbeat":
            return "celery", {"hostname": "app1", "task_id": self.uuid()}
        # permission.changed
        perms = ["orders.view_order", "orders.change_order", "orders.delete_order", "audit.view_event",
                 "orders.view_customer", "accounts.change_profile"]
        return f"user:{actor.pk}" if actor else "", {"added": rng.sample(perms, rng.randint(0, 2)),
                                                     "removed": rng.sample(perms, rng.randint(0, 1)),
                                                     "by": "admin"}

    def request_context(self):
        context = {"request_id": self.uuid(), "accept_language": self.rng.choice(LANGUAGES),
                   "geo": {"country": self.rng.choices(COUNTRIES, weights=self.country_weights)[0][0],
                           "city": self.rng.choice(CITIES)}}
        if self.rng.random() < 0.5:
            context["referer"] = "https://shop.example/{}?ref={}".format(
                self.rng.choice(["cart", "checkout", "account", "orders", "search"]), self.rng.randint(1, 999))
        return context

    def events(self, count, users):
        made = 0
        while made < count:
            size = min(BATCH, count - made)
            rows = []
            for _ in range(size):
                action = self.rng.choices(self.action_names, self.action_weights)[0]
                anonymous = action == "heartbeat" or (
                    action in ("api.call", "login_failed") and self.rng.random() < 0.3
                )
                actor = None if anonymous or not users else self.rng.choice(users)
                target, payload = self.event_payload(action, actor)
                system = action == "heartbeat"
                if not system and self.rng.random() < 0.6:
                    payload["context"] = self.request_context()
                rows.append(Event(actor=actor, action=action, target=target, payload=payload,
                                  ip=None if system else self.ip(),
                                  user_agent="" if system else self.rng.choice(USER_AGENTS),
                                  created_at=self.past(recent_bias=1.4)))
            Event.objects.bulk_create(rows)
            made += size
        return made


class Command(BaseCommand):
    help = "Seed the database with deterministic, realistic demo data (users, orders, audit events, sessions)."

    def add_arguments(self, parser):
        parser.add_argument("--users", type=int, default=500)
        parser.add_argument("--customers", type=int, default=5000)
        parser.add_argument("--orders", type=int, default=20000)
        parser.add_argument("--events", type=int, default=60000)
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--now", default=None,
                            help="ISO date or datetime the data ends at (UTC; default: today 00:00 UTC). "
                                 "Same --seed and --now give the same data.")
        parser.add_argument("--force", action="store_true",
                            help="TRUNCATE every table this command fills, then seed again.")

    def handle(self, *args, **options):
        for name in ("users", "customers", "orders", "events"):
            if options[name] < 0:
                raise CommandError(f"--{name} must be zero or more")
        if options["orders"] and not options["customers"]:
            raise CommandError("--orders needs at least one customer (--customers)")
        now = self.parse_now(options["now"])

        if not options["force"] and (Customer.objects.exists() or Order.objects.exists()):
            self.stdout.write("seed_demo: data already present, nothing to do (use --force to reseed)")
            return

        config = settings.CONFIG
        started = time.monotonic()
        seeder = Seeder(options["seed"], now)
        with transaction.atomic():
            if options["force"]:
                self.truncate()
            known = []
            for username, variable, superuser in (("demo", "SEED_DEMO_PASSWORD", False),
                                                  ("admin", "SEED_ADMIN_PASSWORD", True)):
                password = config.get(variable)
                if password:
                    known.append(seeder.known_user(username, password, superuser))
                else:
                    self.stdout.write(f"seed_demo: {variable} is not set, not creating user '{username}'")
            taken = set(get_user_model().objects.values_list("username", flat=True))
            users = seeder.users(options["users"], taken)
            sessions = seeder.sessions(users)
            customers = seeder.customers(options["customers"])
            orders = seeder.orders(options["orders"], customers)
            events = seeder.events(options["events"], users + known)
        self.analyze()
        elapsed = time.monotonic() - started
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_database_size(current_database())")
            size = cursor.fetchone()[0]
        self.stdout.write(
            f"seed_demo: created {len(users)} users, {len(known)} known users, {sessions} sessions, "
            f"{len(customers)} customers, {orders} orders, {events} events in {elapsed:.1f}s; "
            f"database size {size / 1048576:.1f} MiB"
        )

    @staticmethod
    def parse_now(value):
        if value is None:
            today = dt.datetime.now(dt.timezone.utc).date()
            return dt.datetime.combine(today, dt.time(0, 0), tzinfo=dt.timezone.utc)
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            raise CommandError("--now must be an ISO date or datetime, e.g. 2025-01-31") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.timezone.utc)
        return parsed

    @staticmethod
    def tables():
        user_model = get_user_model()
        models = [OrderLine, Order, Customer, Event, Session, LogEntry, Profile,
                  user_model.groups.through, user_model.user_permissions.through, user_model]
        return [model._meta.db_table for model in models]

    def truncate(self):
        quote = connection.ops.quote_name
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE {} RESTART IDENTITY CASCADE".format(", ".join(quote(t) for t in self.tables())))

    def analyze(self):
        quote = connection.ops.quote_name
        with connection.cursor() as cursor:
            for table in self.tables():
                cursor.execute(f"ANALYZE {quote(table)}")
