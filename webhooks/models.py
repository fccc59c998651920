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
    # The message whose outcome the event waits for (a reply or a receipt overtaking its
    # Message 1's send): it is processed once that message is settled, however long it takes.
    waiting_for = models.ForeignKey(
        "messaging.Message",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        db_constraint=False,
        related_name="+",
        verbose_name=_("waits for message"),
    )

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
            models.Index(
                fields=["waiting_for"],
                condition=Q(waiting_for__isnull=False),
                name="webhookevent_waiting_for",
            ),
            # Retention removes the oldest first, and the admin lists the newest first: both
            # walk a range of it, never the table. Appended in time order, cheap to keep.
            models.Index(fields=["received_at"], name="webhookevent_received_at"),
        ]

    def __str__(self) -> str:
        return f"{self.event or '?'} {self.message_id} {self.ack}".strip()


class InboundOutcome(models.TextChoices):
    """What Relance did with an inbound message (webhooks/replies.py decides)."""

    MESSAGE_2 = "message_2", _("triggered Message 2")
    CAMPAIGN_PAUSED = "campaign_paused", _("Message 2 waits: campaign paused")
    ALREADY_ANSWERED = "already_answered", _("already had Message 2")
    OPT_OUT = "opt_out", _("opt-out (stop word)")
    OPTED_OUT = "opted_out", _("contact opted out earlier")
    LATE = "late", _("late: reply window closed")
    CAMPAIGN_OVER = "campaign_over", _("campaign no longer sending")
    NOT_A_REPLY = "not_a_reply", _("no Message 1 to answer")
    UNKNOWN_SENDER = "unknown_sender", _("unknown sender")
    GROUP = "group", _("group, channel or notice")
    WAITING = "waiting", _("waits for Message 1's outcome")


class InboundMessage(models.Model):
    """One message a contact (or anyone) wrote to one of our numbers, and what Relance did
    with it. Written by webhook processing in the transaction that acts on the event, one
    row per event (reprocessing the event updates it)."""

    # The raw event goes after RETENTION_DAYS (messaging/retention.py); the reply stays.
    event = models.OneToOneField(
        WebhookEvent,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="inbound",
        verbose_name=_("webhook event"),
    )
    # No index of their own on contact and campaign: the composite indexes below start with them.
    contact = models.ForeignKey(
        "campaigns.Contact",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        db_index=False,
        related_name="inbound_messages",
        verbose_name=_("contact"),
    )
    # The number as the event gives it: for an unknown sender, all there is.
    phone = models.CharField(_("phone"), max_length=64, blank=True)
    device = models.ForeignKey(
        "messaging.Device",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("device"),
    )
    written_at = models.DateTimeField(_("written at"))
    text = models.TextField(_("text"), blank=True)
    media_kind = models.CharField(_("media"), max_length=32, blank=True)
    whatsapp_id = models.CharField(_("WhatsApp id"), max_length=128, blank=True)
    campaign = models.ForeignKey(
        "campaigns.Campaign",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        db_index=False,
        related_name="inbound_messages",
        verbose_name=_("campaign"),
    )
    message_1 = models.ForeignKey(
        "messaging.Message",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="inbound_messages",
        verbose_name=_("Message 1 answered"),
    )
    outcome = models.CharField(_("outcome"), max_length=20, choices=InboundOutcome)

    class Meta:
        ordering = ["-written_at", "-id"]
        verbose_name = _("inbound message")
        verbose_name_plural = _("inbound messages")
        constraints = [
            models.CheckConstraint(
                condition=Q(outcome__in=InboundOutcome.values), name="inboundmessage_outcome_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["-written_at", "-id"], name="inbound_newest"),
            models.Index(fields=["contact", "written_at"], name="inbound_by_contact"),
            models.Index(fields=["campaign", "outcome"], name="inbound_by_campaign"),
        ]

    def __str__(self) -> str:
        return f"{self.phone} {self.written_at:%Y-%m-%d %H:%M}: {self.text[:40]}"
