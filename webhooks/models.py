from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from config import clock


def _now():
    return clock.now()


class EventStatus(models.TextChoices):
    RECEIVED = "received", _("received, not processed yet")
    PROCESSED = "processed", _("processed")
    REJECTED = "rejected", _("rejected (not an event Relance understands)")
    FAILED = "failed", _("failed (gave up after retries)")


class WebhookEvent(models.Model):
    """One event Wassenger posted, stored raw before anything acts on it.

    `dedup_key` makes a redelivery of the same event a no-op: `event|message id|ack` for
    receipts, `event|message id` for inbound messages (see webhooks/ingest.py).
    """

    event = models.CharField(_("event"), max_length=64, blank=True)
    # The message the event is about (for number:session: the Wassenger device id).
    message_id = models.CharField(_("message id"), max_length=128, blank=True)
    ack = models.CharField(_("ack / status"), max_length=32, blank=True)
    # Unique through Meta.constraints rather than unique=True, which would add a second,
    # varchar_pattern_ops index that no query uses and every delivery pays to update.
    dedup_key = models.CharField(_("deduplication key"), max_length=255)
    payload = models.JSONField(_("raw event"))
    status = models.CharField(_("status"), max_length=10, choices=EventStatus, default=EventStatus.RECEIVED)
    reason = models.TextField(_("what processing did, or why not"), blank=True)
    # When it happened according to Wassenger (event or message time), if the payload says.
    occurred_at = models.DateTimeField(_("occurred at"), null=True, blank=True)
    received_at = models.DateTimeField(_("received at"), default=_now)
    processed_at = models.DateTimeField(_("processed at"), null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(_("processing attempts"), default=0)

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name = _("webhook event")
        verbose_name_plural = _("webhook events")
        constraints = [
            models.UniqueConstraint(fields=["dedup_key"], name="webhookevent_dedup_key_unique"),
            models.CheckConstraint(
                condition=Q(status__in=EventStatus.values), name="webhookevent_status_valid"
            ),
        ]
        indexes = [
            # The sweeper's query: what is still waiting, oldest first.
            models.Index(
                fields=["received_at"], condition=Q(status=EventStatus.RECEIVED), name="webhookevent_waiting"
            ),
            # Only session changes are looked up by event and id (a newer one wins); receipts
            # and replies, nearly all the traffic, need not pay for the index.
            models.Index(
                fields=["message_id", "occurred_at"],
                condition=Q(event="number:session"),
                name="webhookevent_session_changes",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event or '?'} {self.message_id} {self.ack}".strip()
