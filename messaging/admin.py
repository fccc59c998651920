from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from config import clock
from config.admin_base import ReadOnlyAdmin
from messaging import wassenger
from messaging.devices import device_connect, device_resume
from messaging.models import Device, DeviceDay, Message, MessageAttempt


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = [
        "label",
        "phone",
        "wassenger_id",
        "is_default",
        "daily_limit",
        "gap_seconds",
        "batch_size",
        "batch_pause_seconds",
        "send_window",
        "halted_at",
        "last_sent_at",
    ]
    list_filter = ["is_default", ("halted_at", admin.EmptyFieldListFilter)]
    search_fields = ["label", "phone", "wassenger_id"]
    readonly_fields = [
        "last_sent_at",
        "sent_in_batch",
        "paused_until",
        "lease_owner",
        "lease_expires_at",
        "session_status",
        "wassenger_status",
        "plan",
        "health_checked_at",
        "link_failures",
        "link_down_since",
    ]
    actions = ["resume_sending"]

    change_form_template = "admin/messaging/device/change_form.html"

    def save_model(self, request, obj, form, change):
        """Write only what the operator changed: the sender (lease, batch position, pause,
        last send, breaker), the checks and the halts write the other columns meanwhile, and
        the values this form read a while ago must not overwrite them."""
        if change:
            fields = list(form.changed_data)
            if "halted_at" in fields and obj.halted_at is None:  # resumed by hand
                obj.resumed_at = clock.now()
                fields.append("resumed_at")
            obj.save(update_fields=fields)
        else:
            super().save_model(request, obj, form, change)

    def get_urls(self):
        connect = self.admin_site.admin_view(require_POST(self.connect_view))
        return [path("<int:pk>/connect/", connect, name="messaging_device_connect"), *super().get_urls()]

    def connect_view(self, request, pk: int):
        """POST only (CSRF checked by the admin), with the device change permission."""
        from messaging.management.commands.wassenger_connect import connection_report

        device = get_object_or_404(Device, pk=pk)
        if not self.has_change_permission(request, device):
            raise PermissionDenied
        try:
            for line in connection_report(device_connect(device=device)):
                self.message_user(request, line, messages.SUCCESS)
        except wassenger.WassengerError as error:
            self.message_user(request, _("Wassenger refused: %(error)s") % {"error": error}, messages.ERROR)
        return redirect(reverse("admin:messaging_device_change", args=[pk]))

    @admin.action(description=_("Resume sending (clear the halt)"))
    def resume_sending(self, request, queryset):
        resumed = sum(device_resume(device=device) for device in queryset)
        self.message_user(request, _("%(count)d device(s) resumed.") % {"count": resumed}, messages.SUCCESS)


@admin.register(DeviceDay)
class DeviceDayAdmin(ReadOnlyAdmin):
    """The daily quota counters: written only by the senders."""

    list_display = ["day", "device", "message_1_count", "message_2_count"]
    list_filter = ["device"]
    list_select_related = ["device"]
    date_hierarchy = "day"


class MessageAttemptInline(admin.TabularInline):
    model = MessageAttempt
    fields = ["number", "started_at", "finished_at", "outcome", "http_status", "error"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin):
    """Messages are the record of what was sent: read-only, written only by the workers."""

    list_display = [
        "id",
        "campaign",
        "contact",
        "kind",
        "status",
        "attempts",
        "sent_at",
        "delivered_at",
        "read_at",
        "replied_at",
    ]
    # Filters on indexed columns; sent_at by ranges (today, past 7 days…) rather than a date
    # hierarchy, whose year and month links read every row's date.
    list_filter = ["status", "kind", "device", "campaign", ("sent_at", admin.DateFieldListFilter)]
    search_fields = ["contact__phone", "contact__name", "reference", "wassenger_id", "whatsapp_id"]
    list_select_related = ["campaign", "contact"]
    # Newest first by id (creation order): the primary key's index, no sort of every message.
    ordering = ["-id"]
    inlines = [MessageAttemptInline]
