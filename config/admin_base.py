"""What every read-only admin page shares: records written only by the system."""

from django.contrib import admin


class ReadOnlyAdmin(admin.ModelAdmin):
    """Operators look; only the workers write (messages, counters, events, incidents)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
