"""Django settings of the sample application.

Every deployment-specific value comes from the environment, loaded by
``sampleapp.envfile`` from the file(s) named by SAMPLEAPP_ENV_FILE (default
/etc/sampleapp/env; the lab names /etc/sampleapp/env:/etc/sampleapp/secrets.env,
the second rendered from Vault); the process environment overrides the files. Nothing in
this module logs or prints a value.
"""

from pathlib import Path

from sampleapp.envfile import Config

BASE_DIR = Path(__file__).resolve().parent.parent

CONFIG = Config.load()

SECRET_KEY, DB_HOST, DB_NAME, DB_USER, DB_PASSWORD, REDIS_URL = CONFIG.require(
    "SECRET_KEY", "DB_HOST", "DB_NAME", "DB_USER", "DB_PASSWORD", "REDIS_URL"
)
# Previous keys, still accepted for signatures and session auth hashes after a rotation.
SECRET_KEY_FALLBACKS = CONFIG.get_list("SECRET_KEY_FALLBACKS")
# HS256 key for API tokens, and the previous keys tokens signed with them still verify
# against (rotated like SECRET_KEY). Optional: the app issues no tokens without it.
JWT_SIGNING_KEY = CONFIG.get("JWT_SIGNING_KEY") or None
JWT_SIGNING_KEY_FALLBACKS = CONFIG.get_list("JWT_SIGNING_KEY_FALLBACKS")
ALLOWED_HOSTS = CONFIG.get_list("ALLOWED_HOSTS")
if not ALLOWED_HOSTS:
    CONFIG.require("ALLOWED_HOSTS")
DEBUG = CONFIG.get_bool("DEBUG", default=False)
# /lab/fault/ (slow answers and 5xx on demand, for the error-rate and latency checks): lab and tests only.
LAB_FAULTS = CONFIG.get_bool("LAB_FAULTS", default=False)

INSTALLED_APPS = [
    "accounts",
    "audit",
    "orders",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "sampleapp.urls"
WSGI_APPLICATION = "sampleapp.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": DB_HOST,
        "PORT": CONFIG.get_int("DB_PORT", 5432),
        "NAME": DB_NAME,
        "USER": DB_USER,
        "PASSWORD": DB_PASSWORD,
        # A new connection per request: a rotated password takes effect at the next
        # request after the restart, and no worker holds a connection while idle.
        "CONN_MAX_AGE": 0,
        "OPTIONS": {
            "sslmode": CONFIG.get("DB_SSLMODE") or "prefer",
            "application_name": "sampleapp",
            "connect_timeout": CONFIG.get_int("DB_CONNECT_TIMEOUT", 5),
        },
    }
}

# Sessions live in the database (django_session), so backups and restores carry them.
SESSION_ENGINE = "django.contrib.sessions.backends.db"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/whoami/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = CONFIG.get("STATIC_ROOT") or None

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Debug pages and error reports mask connection URLs as well as the usual secret names.
DEFAULT_EXCEPTION_REPORTER_FILTER = "sampleapp.reporting.SampleAppExceptionReporterFilter"

# Celery: broker and result backend are the same Redis database.
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
# Used when a beat scheduler runs (`celery -A sampleapp worker -B` or `celery beat`).
CELERY_BEAT_SCHEDULE = {
    "audit-heartbeat": {"task": "audit.tasks.record_heartbeat", "schedule": 60.0},
}

# Logging goes to stderr only. No handler or formatter here prints settings.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"},
    },
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": "plain"},
    },
    "root": {"handlers": ["stderr"], "level": CONFIG.get("LOG_LEVEL") or "INFO"},
    "loggers": {
        # Request errors are logged by Django without the POST body or settings.
        "django": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "django.db.backends": {"level": "WARNING"},
    },
}
