"""Cursors whose statements PostgreSQL prepares once per connection.

Django binds parameters on the client, so the server parses and plans every statement it
is sent. For the two hot paths that run one large statement over and over (the webhook's
store in webhooks/ingest.py; the sender's claim and outcome in messaging/claims.py),
planning costs more than running: prepared, a connection (kept for CONN_MAX_AGE, or a
sender's whole batch) plans each once. bench/webhook_ingest.py and
bench/send_pipeline.py measure the difference.

DATABASE_PREPARED_STATEMENTS (settings) gives the connection a `prepare_threshold`;
off, for a transaction-pooling proxy that cannot keep prepared statements (PgBouncer
before 1.21), psycopg prepares nothing and these cursors only bind on the server.
"""

import psycopg
from django.db import connection


def prepared_cursor():
    """A Django cursor (errors translated, queries logged under DEBUG) over a prepared one."""
    connection.ensure_connection()
    raw = _PreparedCursor(connection.connection)
    return connection.make_debug_cursor(raw) if connection.queries_logged else connection.make_cursor(raw)


class _PreparedCursor(psycopg.Cursor):
    """Binds parameters on the server and asks psycopg to prepare at once (it keeps each
    statement per connection and reuses it for the same text); without a
    `prepare_threshold` on the connection, as Django leaves it by default, psycopg
    prepares nothing."""

    def execute(self, query, params=None, *, prepare=None, binary=None):
        return super().execute(query, params, prepare=True, binary=binary)
