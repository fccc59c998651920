from django.contrib import admin

from config.admin_base import ReadOnlyAdmin
from monitoring.models import DailyReport, Heartbeat, Incident


@admin.register(Incident)
class IncidentAdmin(ReadOnlyAdmin):
    list_display = ["opened_at", "kind", "summary", "closed_at"]
    list_filter = ["kind", ("closed_at", admin.EmptyFieldListFilter)]
    search_fields = ["summary", "key"]


@admin.register(Heartbeat)
class HeartbeatAdmin(ReadOnlyAdmin):
    list_display = ["name", "beat_at"]


@admin.register(DailyReport)
class DailyReportAdmin(ReadOnlyAdmin):
    list_display = ["day", "sent_at"]
    date_hierarchy = "day"
