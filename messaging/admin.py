from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _

from config.admin_base import ReadOnlyAdmin
from messaging.devices import device_resume
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
        "halted_at",
        "last_sent_at",
    ]
    list_filter = ["is_default", ("halted_at", admin.EmptyFieldListFilter)]
    search_fields = ["label", "phone", "wassenger_id"]
    readonly_fields = ["last_sent_at", "sent_in_batch", "paused_until", "lease_owner", "lease_expires_at"]
    actions = ["resume_sending"]

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
    list_filter = ["status", "kind", "device", "campaign"]
    search_fields = ["contact__phone", "contact__name", "reference", "wassenger_id", "whatsapp_id"]
    list_select_related = ["campaign", "contact"]
    date_hierarchy = "created_at"
    inlines = [MessageAttemptInline]
