"""Relance settings: one module, every knob read from the environment (or `.env`).

`.env.example` lists every variable with a comment. Nothing secret lives here: in
production a missing SECRET_KEY stops start-up; in development a key is generated
once into `var/`.
"""

import secrets
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")

# "development" (the default: run on a laptop, sandbox, generated secrets) or "production".
RELANCE_ENV = env.str("RELANCE_ENV", default="development")
if RELANCE_ENV not in ("development", "production"):
    raise ImproperlyConfigured(f"RELANCE_ENV must be 'development' or 'production', not {RELANCE_ENV!r}")
PRODUCTION = RELANCE_ENV == "production"


def _generated_secret(name: str) -> str:
    """A development-only secret, created once under var/ so that it survives restarts."""
    path = VAR_DIR / name
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def _required_in_production(name: str) -> str:
    value = env.str(name, default="")
    if value:
        return value
    if PRODUCTION:
        raise ImproperlyConfigured(
            f"{name} is not set. Production mode (RELANCE_ENV=production) needs it in the "
            f"environment or in .env; generate one with: python -c 'import secrets; "
            f"print(secrets.token_urlsafe(48))'"
        )
    return _generated_secret(name.lower())


SECRET_KEY = _required_in_production("SECRET_KEY")
DEBUG = env.bool("DEBUG", default=not PRODUCTION)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[] if PRODUCTION else ["localhost", "127.0.0.1"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "messaging",
    "campaigns",
    "webhooks",
    "monitoring",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

# --- Database -------------------------------------------------------------------------
# DATABASE_URL selects PostgreSQL (postgres://user:pass@host:5432/name). Unset, Relance
# starts its embedded PostgreSQL under var/pgdata (config/embedded_pg.py). Never SQLite.
if env.str("DATABASE_URL", default=""):
    DATABASES = {"default": env.db("DATABASE_URL")}
    if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured("DATABASE_URL must point to PostgreSQL (postgres://…).")
else:
    from config.embedded_pg import ensure_running

    DATABASES = {"default": ensure_running()}
# Reuse connections (django-q2 throughput drops fivefold without it) and check them
# before use, so that a PostgreSQL restart does not fail the next tasks.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# The two hot statements, the webhook's store and the sender's claim and outcome, are
# prepared once per connection instead of parsed and planned each time (config/prepared.py);
# nothing else is prepared. Set it false behind a transaction-pooling proxy that cannot keep
# prepared statements (PgBouncer before 1.21).
DATABASE_PREPARED_STATEMENTS = env.bool("DATABASE_PREPARED_STATEMENTS", default=True)
if DATABASE_PREPARED_STATEMENTS:
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("prepare_threshold", 5)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# django-q2 keeps cluster status in the cache: it must be shared (database) so that the
# web process can see the workers.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "relance_cache",
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = env.str("LANGUAGE_CODE", default="en")
LANGUAGES = [("en", "English"), ("fr", "Français")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"


# An S3-compatible bucket for campaign attachments (AWS S3, Scaleway, OVH, MinIO, ...) through
# django-storages, when MEDIA_S3_BUCKET is set; MEDIA_S3_ENDPOINT_URL names a provider other than
# AWS. Empty keys leave boto3 its own credentials chain (AWS_ACCESS_KEY_ID, an instance role).
# A function, so that a test builds it from its own environment.
def media_storage() -> dict:
    """STORAGES["default"]: the S3 bucket when one is named, else MEDIA_STORAGE_BACKEND."""
    bucket = env.str("MEDIA_S3_BUCKET", default="")
    if not bucket:
        return {
            "BACKEND": env.str("MEDIA_STORAGE_BACKEND", default="django.core.files.storage.FileSystemStorage")
        }
    given = {
        "endpoint_url": env.str("MEDIA_S3_ENDPOINT_URL", default=""),
        "region_name": env.str("MEDIA_S3_REGION", default=""),
        "access_key": env.str("MEDIA_S3_ACCESS_KEY_ID", default=""),
        "secret_key": env.str("MEDIA_S3_SECRET_ACCESS_KEY", default=""),
        # "path" for providers without bucket subdomains (MinIO, most self-hosted ones); empty: auto.
        "addressing_style": env.str("MEDIA_S3_ADDRESSING_STYLE", default=""),
    }
    options = {name: value for name, value in given.items() if value}
    options.update(
        bucket_name=bucket,
        # Keys under this prefix, so that one bucket can serve several installations.
        location=env.str("MEDIA_S3_PREFIX", default="media"),
        # A private bucket: URLs are signed and last this long (MEDIA_SEND_MODE=url hands one to
        # Wassenger at each send, so it only needs to outlive the send's fetch).
        querystring_auth=True,
        querystring_expire=env.int("MEDIA_S3_URL_EXPIRES_SECONDS", default=3600),
        # Never overwrite: the Wassenger file id of an upload is kept by the file's name.
        file_overwrite=False,
    )
    return {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options}


STORAGES = {
    # Campaign attachments (campaigns/media.py): MEDIA_ROOT, an S3 bucket or any Django storage.
    "default": media_storage(),
    # Production serves collected, hashed and compressed files (run collectstatic on deploy).
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Where campaign attachments are stored by the default storage, and the URL path it names them by.
MEDIA_ROOT = env.path("MEDIA_ROOT", default=BASE_DIR / "var" / "media")
MEDIA_URL = env.str("MEDIA_URL", default="/media/")
# How an attachment reaches Wassenger: "upload" (POST /v1/files once per campaign, then its id)
# or "url" (Wassenger fetches MEDIA_PUBLIC_BASE_URL + the file's URL; it must be public).
MEDIA_SEND_MODE = env.str("MEDIA_SEND_MODE", default="upload")
MEDIA_PUBLIC_BASE_URL = env.str("MEDIA_PUBLIC_BASE_URL", default="")

# >>> operator: the operator pages (/ dashboard, campaigns, contacts; templates/, static/)
# Language: the browser's (Accept-Language) when it is one of LANGUAGES, else LANGUAGE_CODE;
# the switch in the page header overrides both. French strings live in locale/ (compiled .mo).
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"
# The pages' own CSS and JS, vendored: nothing is loaded from a CDN.
STATICFILES_DIRS = [BASE_DIR / "static"]
# Seconds between two refreshes of the live figures (dashboard, campaign page) in the browser.
OPERATOR_REFRESH_SECONDS = env.float("OPERATOR_REFRESH_SECONDS", default=5.0)
# Rows per page of the lists and of a campaign's per-recipient timeline.
OPERATOR_PAGE_SIZE = env.int("OPERATOR_PAGE_SIZE", default=50)
# An unfiltered list (admin, API, pages) of a table with at least this many rows is counted by
# PostgreSQL's estimate rather than a scan of the whole table (config/paging.py).
ESTIMATED_COUNT_ABOVE = env.int("ESTIMATED_COUNT_ABOVE", default=10_000)
# Campaign figures (funnel, counts) whose counting read at least this many messages (one large
# campaign, a page of many) are kept FIGURES_CACHE_SECONDS, shown "as of HH:MM"; so are the
# contact totals of a contact table this large. Smaller ones are counted on every view.
FIGURES_CACHE_ABOVE = env.int("FIGURES_CACHE_ABOVE", default=2_000)
FIGURES_CACHE_SECONDS = env.float("FIGURES_CACHE_SECONDS", default=60.0)
# Webhook events, send attempts and task results older than this are removed by the cleanup
# job, in batches of RETENTION_BATCH rows (messaging/retention.py). Messages are never removed.
RETENTION_DAYS = env.int("RETENTION_DAYS", default=90)
RETENTION_BATCH = env.int("RETENTION_BATCH", default=5_000)
# <<< operator

# --- Security (production) ------------------------------------------------------------
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=PRODUCTION)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = PRODUCTION
SECURE_HSTS_PRELOAD = PRODUCTION
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto.
if env.bool("BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Email (alerts to ADMINS) -------------------------------------------------------------
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="relance@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
EMAIL_SUBJECT_PREFIX = "[Relance] "
ADMINS = [("Relance admin", a) for a in env.list("ADMIN_EMAILS", default=[])]

# --- Phones ---------------------------------------------------------------------------
# Region used to read national numbers ("06 12 34 56 78" → +33612345678).
PHONE_DEFAULT_REGION = env.str("PHONE_DEFAULT_REGION", default="FR")

# --- Pacing defaults for a new device (each device carries its own copy) --------------
DEVICE_DAILY_LIMIT = env.int("DEVICE_DAILY_LIMIT", default=1000)
DEVICE_GAP_SECONDS = env.float("DEVICE_GAP_SECONDS", default=25.0)
DEVICE_BATCH_SIZE = env.int("DEVICE_BATCH_SIZE", default=25)
DEVICE_BATCH_PAUSE_SECONDS = env.float("DEVICE_BATCH_PAUSE_SECONDS", default=300.0)
# Send windows: a new device's time zone and weekly window ("always", or e.g.
# "mon-fri 09:00-20:00; sat 10:00-13:00"): no Message 1 outside it.
DEVICE_TIME_ZONE = env.str("DEVICE_TIME_ZONE", default="Europe/Paris")
DEVICE_SEND_WINDOW = env.str("DEVICE_SEND_WINDOW", default="mon-sun 09:00-20:00")
# A Message 2 may go out this long after its contact's reply, outside the window.
MESSAGE_2_AFTER_HOURS_MINUTES = env.float("MESSAGE_2_AFTER_HOURS_MINUTES", default=60.0)
# A human rhythm: each gap drawn in [gap, gap × (1 + GAP_JITTER)], each batch size in
# [batch × (1 − BATCH_JITTER), batch]. 0 keeps the legacy rhythm exactly.
DEVICE_GAP_JITTER = env.float("DEVICE_GAP_JITTER", default=0.4)
DEVICE_BATCH_JITTER = env.float("DEVICE_BATCH_JITTER", default=0.2)
# Warm-up: a young number's daily limit by its age in days ("FIRST-LAST:LIMIT,…"; empty: none),
# never above the device's own limit, which applies past the table.
DEVICE_WARMUP = env.str("DEVICE_WARMUP", default="0-3:50,4-7:100,8-14:250,15-29:500")
# A number unlinked (its QR code to scan again) for this long is halted for good: its unsent
# Message 1s go to its campaigns' other numbers, as a banned number's do at once.
DEVICE_HANDOVER_UNLINKED_HOURS = env.float("DEVICE_HANDOVER_UNLINKED_HOURS", default=6.0)

# --- Wassenger ------------------------------------------------------------------------
# Without a token Relance talks to the local sandbox (manage.py wassenger_sandbox).
WASSENGER_API_TOKEN = env.str("WASSENGER_API_TOKEN", default="")
WASSENGER_SANDBOX = env.bool("WASSENGER_SANDBOX", default=not WASSENGER_API_TOKEN)
WASSENGER_SANDBOX_HOST = "127.0.0.1"
WASSENGER_SANDBOX_PORT = env.int("WASSENGER_SANDBOX_PORT", default=8765)
if WASSENGER_SANDBOX:
    WASSENGER_API_URL = f"http://{WASSENGER_SANDBOX_HOST}:{WASSENGER_SANDBOX_PORT}/v1"
    WASSENGER_API_TOKEN = WASSENGER_API_TOKEN or "sandbox-token"
else:
    WASSENGER_API_URL = env.str("WASSENGER_API_URL", default="https://api.wassenger.com/v1")
# Wassenger id of the default device (created on first run); empty lets Wassenger choose.
WASSENGER_DEVICE_ID = env.str("WASSENGER_DEVICE_ID", default="")
WASSENGER_CONNECT_TIMEOUT = env.float("WASSENGER_CONNECT_TIMEOUT", default=5.0)
WASSENGER_READ_TIMEOUT = env.float("WASSENGER_READ_TIMEOUT", default=30.0)
# Webhook: Wassenger calls RELANCE_BASE_URL/webhooks/wassenger/?secret=WASSENGER_WEBHOOK_SECRET
RELANCE_BASE_URL = env.str("RELANCE_BASE_URL", default="http://127.0.0.1:8000")
WASSENGER_WEBHOOK_SECRET = _required_in_production("WASSENGER_WEBHOOK_SECRET")

# >>> sandbox: knobs of the local Wassenger stand-in (manage.py wassenger_sandbox)
# Seconds from acceptance to message:out:new (the message went out), then to the "delivered" ack.
WASSENGER_SANDBOX_SENT_DELAY = env.float("WASSENGER_SANDBOX_SENT_DELAY", default=1.0)
WASSENGER_SANDBOX_DELIVERED_DELAY = env.float("WASSENGER_SANDBOX_DELIVERED_DELAY", default=3.0)
# Seconds from the "delivered" ack to the "read" ack.
WASSENGER_SANDBOX_READ_DELAY = env.float("WASSENGER_SANDBOX_READ_DELAY", default=10.0)
# Seconds from the "read" ack to the contact's reply (message:in:new).
WASSENGER_SANDBOX_REPLY_DELAY = env.float("WASSENGER_SANDBOX_REPLY_DELAY", default=20.0)
# Share (0–1) of contacts that reply to their first message; chosen by a hash of phone and seed.
WASSENGER_SANDBOX_REPLY_SHARE = env.float("WASSENGER_SANDBOX_REPLY_SHARE", default=0.3)
# Share (0–1) of those replies that are a stop word (STOP, ARRÊT, UNSUBSCRIBE…).
WASSENGER_SANDBOX_STOP_SHARE = env.float("WASSENGER_SANDBOX_STOP_SHARE", default=0.1)
# Share (0–1) of contacts whose replies come in SPEC's own shape (fromNumber = the device's
# number, the contact only in the chat); the others with fromNumber = the contact.
WASSENGER_SANDBOX_SPEC_SHAPE_SHARE = env.float("WASSENGER_SANDBOX_SPEC_SHAPE_SHARE", default=0.5)
# Share (0–1) of contacts who, once they read their message, also write in a group chat.
WASSENGER_SANDBOX_GROUP_SHARE = env.float("WASSENGER_SANDBOX_GROUP_SHARE", default=0.0)
# Receipts carry Relance's reference: off, as in Wassenger's documented examples.
WASSENGER_SANDBOX_RECEIPT_REFERENCE = env.bool("WASSENGER_SANDBOX_RECEIPT_REFERENCE", default=False)
# Numbers ending with this do not exist on WhatsApp: numbers/exists says so, sends fail later.
WASSENGER_SANDBOX_INVALID_SUFFIX = env.str("WASSENGER_SANDBOX_INVALID_SUFFIX", default="0000")
# Retries of a webhook Relance did not accept (backoff 1, 2, 4… s), then it is dropped.
WASSENGER_SANDBOX_WEBHOOK_RETRIES = env.int("WASSENGER_SANDBOX_WEBHOOK_RETRIES", default=3)
# Seed of the fault draws and of who replies: the same seed replays the same run.
WASSENGER_SANDBOX_SEED = env.int("WASSENGER_SANDBOX_SEED", default=0)
# <<< sandbox

# --- Sending ---------------------------------------------------------------------------
# Share of each device's daily limit held back for Message 2 (follow-ups to replies).
MESSAGE_2_RESERVE_SHARE = env.float("MESSAGE_2_RESERVE_SHARE", default=0.1)
# Retries [legacy 4.6]: at most RETRY_MAX_ATTEMPTS requests per message; the wait before
# attempt n+1 is RETRY_BASE_SECONDS × 2^(n-1) (60, 120, 240 s).
RETRY_MAX_ATTEMPTS = env.int("RETRY_MAX_ATTEMPTS", default=3)
RETRY_BASE_SECONDS = env.float("RETRY_BASE_SECONDS", default=60.0)
# A 429 waits at least this long, or Wassenger's Retry-After if longer.
RATE_LIMIT_MIN_WAIT_SECONDS = env.float("RATE_LIMIT_MIN_WAIT_SECONDS", default=60.0)
# A sender renews its device lease while it works; a dead sender's lease lapses after this.
SENDER_LEASE_SECONDS = env.float("SENDER_LEASE_SECONDS", default=120.0)
# A send whose outcome is unknown is looked up at Wassenger after this delay, before any retry.
RECONCILE_AFTER_SECONDS = env.float("RECONCILE_AFTER_SECONDS", default=30.0)
# >>> loop: knobs of the sender loop (messaging/loop.py, manage.py run_senders)
# Sends of different devices that may be in flight at once in one sender process.
SENDER_LOOP_THREADS = env.int("SENDER_LOOP_THREADS", default=8)
# How often a sender loop looks for devices that became due (a reply's Message 2, a new campaign).
SENDER_LOOP_POLL_SECONDS = env.float("SENDER_LOOP_POLL_SECONDS", default=1.0)
# The device circuit breaker: after a failure of the device's link to Wassenger (no answer,
# a 5xx, a 429) the device waits BASE seconds, doubled at each failure in a row, at most MAX.
DEVICE_BREAKER_BASE_SECONDS = env.float("DEVICE_BREAKER_BASE_SECONDS", default=60.0)
DEVICE_BREAKER_MAX_SECONDS = env.float("DEVICE_BREAKER_MAX_SECONDS", default=1800.0)
# A device whose link has failed for longer than this is an incident (dashboard, /health/, email).
DEVICE_UNREACHABLE_INCIDENT_SECONDS = env.float("DEVICE_UNREACHABLE_INCIDENT_SECONDS", default=300.0)
# The one-minute dispatcher's budget: unknown outcomes looked up per tick, each lookup's
# timeout, and the seconds the lookups may take in all (the rest waits for the next tick).
RECONCILE_SLICE = env.int("RECONCILE_SLICE", default=50)
RECONCILE_LOOKUP_TIMEOUT = env.float("RECONCILE_LOOKUP_TIMEOUT", default=5.0)
DISPATCH_BUDGET_SECONDS = env.float("DISPATCH_BUDGET_SECONDS", default=40.0)
# <<< loop
# Hours after Message 1 during which a reply triggers Message 2 [legacy 7.1].
REPLY_WINDOW_HOURS = env.float("REPLY_WINDOW_HOURS", default=24.0)
# A campaign stays `sending` this long after its last reply window closed, so that a reply
# written in time but delivered late (Wassenger retrying, our cluster down) gets Message 2.
CAMPAIGN_COMPLETION_GRACE_SECONDS = env.float("CAMPAIGN_COMPLETION_GRACE_SECONDS", default=3600.0)

# >>> launch: knobs of campaign launch (campaigns/launch.py)
# A new campaign's fatigue rule: skip contacts who received a Message 1 from any campaign in
# the last N days (0: skip nobody). Each campaign keeps its own value.
LAUNCH_FATIGUE_DAYS = env.int("LAUNCH_FATIGUE_DAYS", default=7)
# <<< launch

# >>> contacts: knobs of contact import and WhatsApp number checks (campaigns/importing.py, verification.py)
# CSV rows parsed and written per set-based statement; memory grows with it, not with the file.
IMPORT_BATCH_SIZE = env.int("IMPORT_BATCH_SIZE", default=5000)
# The largest contact file (CSV or .xlsx) the admin and import_contacts accept, in MB.
IMPORT_MAX_MB = env.float("IMPORT_MAX_MB", default=50.0)
# Where the admin keeps an uploaded CSV between its preview and the operator's confirmation.
IMPORT_UPLOAD_DIR = BASE_DIR / "var" / "imports"
# A number checked less than this many days ago is not checked again.
VERIFY_RECHECK_DAYS = env.float("VERIFY_RECHECK_DAYS", default=30.0)
# Seconds between two number checks of a verification job (Wassenger meters them).
VERIFY_GAP_SECONDS = env.float("VERIFY_GAP_SECONDS", default=1.0)
# <<< contacts

# >>> api: knobs of the REST API (campaigns/api.py, messaging/api.py, monitoring/api.py)
# Requests allowed per authenticated client (token or session) and per anonymous IP, as
# DRF rates: "<number>/<second|minute|hour|day>". A client over its rate gets 429.
API_THROTTLE_USER = env.str("API_THROTTLE_USER", default="600/minute")
API_THROTTLE_ANON = env.str("API_THROTTLE_ANON", default="60/minute")
# <<< api

# >>> webhooks: knobs of the Wassenger webhook and event processing (webhooks/)
# A webhook body larger than this many bytes is refused with 413 (25 events are ~50 KB).
WEBHOOK_MAX_BODY_BYTES = env.int("WEBHOOK_MAX_BODY_BYTES", default=1_000_000)
# A reply that is one of these words opts the contact out; case, accents, surrounding
# spaces and punctuation are ignored ("Arrêt", " stop ", "STOP." all count).
WEBHOOK_STOP_WORDS = env.list(
    "WEBHOOK_STOP_WORDS",
    default=["STOP", "STOP SVP", "STOP MERCI", "STOP PLEASE", "STOPPER", "ARRET", "ARRÊT", "ARRETER"]
    + ["UNSUBSCRIBE", "DESABONNER", "DÉSABONNER"],
)
# Processing attempts of one event before it is marked failed (the sweeper retries each minute).
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=5)
# The every-minute sweeper processes events still waiting this many seconds after arrival.
WEBHOOK_SWEEP_AFTER_SECONDS = env.float("WEBHOOK_SWEEP_AFTER_SECONDS", default=30.0)
# <<< webhooks

# --- Monitoring ---------------------------------------------------------------------------
# Alert levels as shares of a device's daily limit: ok up to 75%, attention to 90%,
# danger to 100%, blocked above (legacy: 750 / 900 / 1000 of 1000).
ALERT_ATTENTION_SHARE = env.float("ALERT_ATTENTION_SHARE", default=0.75)
ALERT_DANGER_SHARE = env.float("ALERT_DANGER_SHARE", default=0.90)
# Email an alert when more than this share of a device's messages failed today...
ALERT_FAILURE_RATE = env.float("ALERT_FAILURE_RATE", default=0.2)
# ...once at least this many were attempted (a few failures early in the day are noise).
ALERT_FAILURE_MIN_ATTEMPTS = env.int("ALERT_FAILURE_MIN_ATTEMPTS", default=20)
# Slowing down on trouble: a device whose recent sends go bad is halted until an operator resumes
# it (messaging/trouble.py): failures above ALERT_FAILURE_RATE (over ALERT_FAILURE_MIN_ATTEMPTS),
# this many "not on WhatsApp" answers, or this share of Message 1 answered STOP, over the lookback.
DEVICE_PAUSE_ON_TROUBLE = env.bool("DEVICE_PAUSE_ON_TROUBLE", default=True)
DEVICE_TROUBLE_LOOKBACK_MINUTES = env.float("DEVICE_TROUBLE_LOOKBACK_MINUTES", default=60.0)
DEVICE_PAUSE_NOT_ON_WHATSAPP = env.int("DEVICE_PAUSE_NOT_ON_WHATSAPP", default=5)
DEVICE_PAUSE_STOP_RATE = env.float("DEVICE_PAUSE_STOP_RATE", default=0.1)
# /health/ answers 503 when the workers' heartbeat (written every 2 minutes) is older.
HEALTH_HEARTBEAT_MAX_AGE_SECONDS = env.float("HEALTH_HEARTBEAT_MAX_AGE_SECONDS", default=300.0)
# Senders are stuck when a device the pacing lets send has had messages due this long with
# nothing sent (above a batch pause and a gap, so that ordinary waiting never counts).
SENDER_STUCK_SECONDS = env.float("SENDER_STUCK_SECONDS", default=600.0)

# --- Background work (django-q2, ORM broker on the same database) ----------------------
# See "django-q2 facts" in DESIGN: every task is safe to run twice; `retry` is far above
# `timeout` × (1 + queue_limit / workers); results of successful tasks are not stored
# (save_limit -1) and failures are pruned by our own cleanup; failed tasks are not re-run
# by the broker (our retry policy lives in our code).
Q_WORKERS = env.int("Q_WORKERS", default=2)
Q_CLUSTER = {
    "name": "relance",
    "orm": "default",
    "workers": Q_WORKERS,
    "timeout": env.int("Q_TIMEOUT", default=120),
    "retry": env.int("Q_RETRY", default=600),
    "queue_limit": 2,
    "max_attempts": 1,
    "ack_failures": True,
    "save_limit": -1,
    "catch_up": False,
    "poll": 0.5,
    "label": "Background tasks",
    # Senders are no django-q cluster: they are sender loops of their own (manage.py
    # run_senders, messaging/loop.py says why).
    "ALT_CLUSTERS": {
        # WhatsApp number checks (bulk ones take long): their own cluster, so that a check
        # of 10,000 numbers never delays a campaign send.
        "verify": {
            "workers": 1,
            "timeout": env.int("Q_VERIFY_TIMEOUT", default=3600),
            "retry": env.int("Q_VERIFY_RETRY", default=7300),
            "queue_limit": 1,
        },
    },
}
VERIFY_CLUSTER = "verify"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {
        "redact_secrets": {"()": "config.logging.RedactSecrets"},
        "require_debug_false": {"()": "django.utils.log.RequireDebugFalse"},
        "skip_deliberate_503": {"()": "config.logging.SkipDeliberateUnavailable"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact_secrets"]},
        # Django's own: an unexpected server error emails the admins (production only).
        "mail_admins": {
            "class": "django.utils.log.AdminEmailHandler",
            "level": "ERROR",
            "filters": ["require_debug_false", "skip_deliberate_503", "redact_secrets"],
        },
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django": {"handlers": ["mail_admins"], "level": "INFO"},
        "django.db.backends": {"level": "WARNING"},
        "pgserver": {"level": "WARNING"},
        # The development server's request lines carry the webhook URL and its ?secret=.
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}

REST_FRAMEWORK = {
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # Token first: its WWW-Authenticate header is what makes an anonymous request a 401, not a 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    # Our viewsets use config.api.ApiPagination (adds ?page_size=, at most 500) on top of this.
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.UserRateThrottle",
        "rest_framework.throttling.AnonRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {"user": API_THROTTLE_USER, "anon": API_THROTTLE_ANON},
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Relance API",
    "DESCRIPTION": "WhatsApp campaigns: contacts, categories, campaigns and their launch, messages, stats. "
    "Authenticate with `Authorization: Token <key>` (manage.py drf_create_token USERNAME) or a session. "
    "Staff may write; other users read only.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and its docs page need a login like the rest of the API.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI's JS and CSS are served from drf-spectacular-sidecar: the docs work offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "CampaignStatusEnum": "campaigns.models.CampaignStatus",
        "MessageStatusEnum": "messaging.models.MessageStatus",
        "MessageKindEnum": "messaging.models.MessageKind",
    },
    # The throttle's 429 on every throttled operation, and links from each create to its detail
    # and actions (config/api.py); the first hook is drf-spectacular's default.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "config.api.schema_throttled_responses",
        "config.api.schema_links",
        "campaigns.api.schema_bulk_limits",
    ],
}
