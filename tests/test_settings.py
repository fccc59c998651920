"""Production settings: secure by default, and a clear error instead of a guessed secret."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "RELANCE_ENV": "production", **env}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_deploy_check_is_clean_with_production_settings():
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        SECRET_KEY=secrets.token_urlsafe(50),
        WASSENGER_WEBHOOK_SECRET=secrets.token_urlsafe(32),
        ALLOWED_HOSTS="relance.example.com",
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_production_without_a_secret_key_stops_with_a_clear_error():
    result = _manage("check", SECRET_KEY="", WASSENGER_WEBHOOK_SECRET="x")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_development_generates_its_secret_key_under_var():
    from django.conf import settings

    assert settings.SECRET_KEY == (BASE_DIR / "var" / "secret_key").read_text().strip()
    assert len(settings.SECRET_KEY) >= 50


def test_every_setting_read_from_the_environment_is_documented_in_env_example():
    import re

    source = (BASE_DIR / "config" / "settings.py").read_text()
    read = set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z0-9_]+)"', source))
    read |= set(re.findall(r'_required_in_production\("([A-Z0-9_]+)"\)', source))
    documented = set(re.findall(r"^#?\s*([A-Z0-9_]+)=", (BASE_DIR / ".env.example").read_text(), re.M))
    assert read, "no settings found: the pattern is broken"
    assert sorted(read - documented) == []


def test_the_webhook_secret_never_reaches_a_log_line():
    import logging

    request_line = '"%s" 200 17', ("POST /webhooks/wassenger/?secret=s3cr3t-value HTTP/1.1",)
    from config.logging import RedactSecrets

    for logger in (logging.getLogger("django.server"), logging.getLogger()):
        (handler,) = [h for h in logger.handlers if any(isinstance(f, RedactSecrets) for f in h.filters)]
        record = logging.LogRecord(logger.name, logging.INFO, __file__, 1, *request_line, None)
        assert handler.filter(record)
        line = handler.format(record)
        assert "s3cr3t-value" not in line and "secret=[redacted]" in line


def test_a_database_url_in_dot_env_keeps_make_run_from_starting_the_embedded_server(tmp_path, monkeypatch):
    from config import embedded_pg

    monkeypatch.delenv("DATABASE_URL", raising=False)  # put back as it was afterwards
    monkeypatch.setattr(embedded_pg, "BASE_DIR", tmp_path)
    assert embedded_pg._configured_database_url() == ""
    (tmp_path / ".env").write_text("DATABASE_URL=postgres://relance@db.example:5432/relance\n")
    assert embedded_pg._configured_database_url() == "postgres://relance@db.example:5432/relance"
