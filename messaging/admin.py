from django.contrib import admin

from messaging.models import Device, Message


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
    ]
    list_filter = ["is_default"]
    search_fields = ["label", "phone", "wassenger_id"]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
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

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
