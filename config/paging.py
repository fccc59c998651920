"""Paginating tables that grow for years without counting them whole.

A page of the newest rows is an index range; its "page 3 of 40,000" is a scan of the whole
table. In a table of ESTIMATED_COUNT_ABOVE rows or more, PostgreSQL's own estimates are count
enough for a paginator: the table's (`pg_class.reltuples`, kept by autovacuum and ANALYZE)
for an unfiltered list, the planner's for a filtered one that it expects to be that large. A
smaller table, or a filter the planner expects to match fewer rows, is counted exactly.
"""

import json

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


def planned_rows(queryset) -> int:
    """The planner's estimate of the rows `queryset` returns (EXPLAIN, nothing is run)."""
    sql, params = queryset.order_by().query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return int(plan[0]["Plan"]["Plan Rows"])


def count_estimated(queryset) -> int:
    """The queryset's count: estimated in a large table, exact otherwise (module docstring)."""
    query = getattr(queryset, "query", None)
    if query is None or query.distinct or query.combinator:
        return queryset.count()
    threshold = settings.ESTIMATED_COUNT_ABOVE
    in_table = table_estimate(queryset.model._meta.db_table)
    if in_table < threshold:
        return queryset.count()
    if not query.where:
        return in_table
    planned = planned_rows(queryset)
    return planned if planned >= threshold else queryset.count()


class EstimatedCountPaginator(Paginator):
    """Django's paginator, counting a whole large table by PostgreSQL's estimate."""

    @cached_property
    def count(self) -> int:
        return count_estimated(self.object_list)
