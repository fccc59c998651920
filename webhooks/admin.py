import json

from django.contrib import admin, messages
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from config.admin_base import ReadOnlyAdmin
from messaging.wassenger.payloads import HANDLED_EVENTS
from webhooks.models import EventStatus, InboundMessage, WebhookEvent
from webhooks.processing import events_reprocess


class EventKindFilter(admin.SimpleListFilter):
    """The events Relance handles, listed from code: Django's own filter on a plain text
    column would read every stored event (SELECT DISTINCT) to build the list."""

    title = _("event")
    parameter_name = "event"

    def lookups(self, request, model_admin):
        return [(name, name) for name in sorted(HANDLED_EVENTS)]

    def queryset(self, request, queryset):
        return queryset.filter(event=self.value()) if self.value() else queryset


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    """Every event Wassenger posted, as received: read-only, with a "reprocess" action."""

    list_display = ["id", "received_at", "event", "message_id", "ack", "status", "attempts", "short_reason"]
    # Ranges of received_at (indexed) rather than a date hierarchy, which reads every row's date.
    list_filter = ["status", EventKindFilter, ("received_at", admin.DateFieldListFilter)]
    search_fields = ["message_id", "dedup_key", "reason"]
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
    list_filter = ["outcome", "campaign", "device", ("written_at", admin.DateFieldListFilter)]
    list_select_related = ["contact", "campaign"]
    search_fields = ["text", "phone", "whatsapp_id"]
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
