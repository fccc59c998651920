"""What admin pages share: records written only by the system, and tables that grow for years."""

from django.contrib import admin

from config.paging import EstimatedCountPaginator


class LargeTableAdmin(admin.ModelAdmin):
    """A changelist of a table that grows for years: no count of the whole table to show
    "N results (M total)", and pages counted by PostgreSQL's estimate when unfiltered."""

    show_full_result_count = False
    paginator = EstimatedCountPaginator


class ReadOnlyAdmin(LargeTableAdmin):
    """Operators look; only the workers write (messages, counters, events, incidents)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
