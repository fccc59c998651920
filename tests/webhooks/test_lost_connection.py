"""A webhook arriving on a database connection that died while idle is stored, not refused."""

import pytest
from django.db import connection, connections

from tests.webhooks.conftest import reply_event
from webhooks.models import WebhookEvent


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _terminate(pid: int) -> None:
    """What a PostgreSQL restart does to the web's idle connections, from another session."""
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        other.close()


@pytest.mark.django_db(transaction=True)
def test_a_webhook_on_a_connection_killed_while_idle_is_stored_on_a_new_one(post):
    killed = _backend_pid()
    _terminate(killed)

    response = post(reply_event("+33612345678", "Bonjour"))

    assert response.status_code == 200 and response.json()["stored"] == 1
    assert WebhookEvent.objects.count() == 1
    assert _backend_pid() != killed
