"""Fence: raw SQL names tables through `Model._meta.db_table`, never by a literal name.

A literal table name is a second home for the model's table: renaming the model or its
app would silently break the statement. Each module listed here builds its SQL from the
models instead.
"""

import re
from pathlib import Path

import pytest
from django.apps import apps
from django.conf import settings

BASE = Path(settings.BASE_DIR)
MONITORING = sorted(p for p in (BASE / "monitoring").rglob("*.py") if "migrations" not in p.parts)
FENCED = [
    "messaging/claims.py",
    "messaging/sending.py",
    "campaigns/figures.py",
    *(str(p.relative_to(BASE)) for p in MONITORING),
]


def _tables() -> set[str]:
    return {model._meta.db_table for model in apps.get_models(include_auto_created=True)}


@pytest.mark.parametrize("path", FENCED)
def test_raw_sql_names_no_table_literally(path):
    text = (BASE / path).read_text()
    found = sorted(t for t in _tables() if re.search(rf"\b{re.escape(t)}\b", text))
    assert not found, f"{path} names {found} literally: use Model._meta.db_table"
