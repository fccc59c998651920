"""Paginating tables that grow for years without counting them whole.

A page of the newest rows is an index range; its "page 3 of 40,000" is a scan of the whole
table. Where nothing filters the list, PostgreSQL's own estimate of the table's rows
(`pg_class.reltuples`, kept by autovacuum and ANALYZE) is count enough for a paginator;
below ESTIMATED_COUNT_ABOVE rows, or with any filter, the count stays exact.
"""

from django.conf import settings
from django.core.paginator import Paginator
from django.db import connection
from django.utils.functional import cached_property


def table_estimate(table: str) -> int:
    """PostgreSQL's estimate of `table`'s rows; -1 if it was never analyzed."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)", [table])
        row = cursor.fetchone()
    return -1 if row is None or row[0] is None else int(row[0])


def count_estimated(queryset) -> int:
    """The queryset's count: estimated for a whole large table, exact otherwise."""
    query = getattr(queryset, "query", None)
    if query is not None and not query.where and not query.distinct and not query.combinator:
        estimate = table_estimate(queryset.model._meta.db_table)
        if estimate >= settings.ESTIMATED_COUNT_ABOVE:
            return estimate
    return queryset.count()


class EstimatedCountPaginator(Paginator):
    """Django's paginator, counting a whole large table by PostgreSQL's estimate."""

    @cached_property
    def count(self) -> int:
        return count_estimated(self.object_list)
