import json

from django.contrib import admin, messages
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from config.admin_base import ReadOnlyAdmin
from webhooks.models import EventStatus, InboundMessage, WebhookEvent
from webhooks.processing import events_reprocess


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    """Every event Wassenger posted, as received: read-only, with a "reprocess" action."""

    list_display = ["id", "received_at", "event", "message_id", "ack", "status", "attempts", "short_reason"]
    list_filter = ["status", "event"]
    search_fields = ["message_id", "dedup_key", "reason"]
    date_hierarchy = "received_at"
    fields = [
        "event",
        "message_id",
        "ack",
        "status",
        "reason",
        "attempts",
        "occurred_at",
        "received_at",
        "processed_at",
        "dedup_key",
        "pretty_payload",
    ]
    readonly_fields = fields
    actions = ["reprocess"]

    @admin.display(description=_("reason"))
    def short_reason(self, event: WebhookEvent) -> str:
        return event.reason if len(event.reason) <= 80 else event.reason[:79] + "…"

    @admin.display(description=_("raw event"))
    def pretty_payload(self, event: WebhookEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(event.payload, indent=2, ensure_ascii=False))

    @admin.action(description=_("Reprocess the selected events"))
    def reprocess(self, request, queryset):
        outcome = events_reprocess(event_ids=list(queryset.values_list("pk", flat=True)))
        counts = [f"{count} {EventStatus(status).label}" for status, count in sorted(outcome.items())]
        summary = ", ".join(counts) or _("nothing")
        self.message_user(request, _("Reprocessed: %(summary)s.") % {"summary": summary}, messages.SUCCESS)


@admin.register(InboundMessage)
class InboundMessageAdmin(ReadOnlyAdmin):
    """What contacts (and anyone else) wrote to our numbers, and what Relance did with it."""

    list_display = ["written_at", "phone", "contact", "short_text", "media_kind", "campaign", "outcome"]
    list_filter = ["outcome", "campaign", "device"]
    list_select_related = ["contact", "campaign"]
    search_fields = ["text", "phone", "whatsapp_id"]
    date_hierarchy = "written_at"
    readonly_fields = [
        "written_at",
        "contact",
        "phone",
        "device",
        "text",
        "media_kind",
        "whatsapp_id",
        "campaign",
        "message_1",
        "outcome",
        "event",
    ]
    fields = readonly_fields

    @admin.display(description=_("text"))
    def short_text(self, inbound: InboundMessage) -> str:
        return inbound.text if len(inbound.text) <= 80 else inbound.text[:79] + "…"
