import uuid

from django.conf import settings
from django.contrib.postgres.functions import RandomUUID
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Coalesce, Now
from django.utils.translation import gettext_lazy as _

from campaigns.phones import E164_REGEX, E164PhoneField
from config import clock


def _now():
    return clock.now()


def _default_daily_limit() -> int:
    return settings.DEVICE_DAILY_LIMIT


def _default_gap() -> float:
    return settings.DEVICE_GAP_SECONDS


def _default_batch_size() -> int:
    return settings.DEVICE_BATCH_SIZE


def _default_batch_pause() -> float:
    return settings.DEVICE_BATCH_PAUSE_SECONDS


def _default_time_zone() -> str:
    return settings.DEVICE_TIME_ZONE


def _default_send_window() -> str:
    return settings.DEVICE_SEND_WINDOW


def _today():
    return clock.now().date()


def validate_time_zone(value: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as error:
        message = _("Unknown time zone %(zone)s (e.g. Europe/Paris).")
        raise ValidationError(message, params={"zone": value}) from error


def validate_send_window(value: str) -> None:
    from django.utils.translation import gettext

    from messaging.pacing import WindowTextError, parse_window

    try:
        parse_window(value)
    except WindowTextError as error:
        raise ValidationError(
            _(
                "Cannot read this send window (%(error)s). Write “always” or e.g. "
                "“mon-fri 09:00-20:00; sat 10:00-13:00”."
            ),
            params={"error": gettext(error.template) % error.params},
        ) from error


class Device(models.Model):
    """A Wassenger sending number, with the pacing that keeps it from being banned."""

    label = models.CharField(_("label"), max_length=100, unique=True)
    wassenger_id = models.CharField(
        _("Wassenger device id"),
        max_length=64,
        blank=True,
        help_text=_("The 24-hex id from Wassenger; empty lets Wassenger pick the account's number."),
    )
    phone = E164PhoneField(_("phone"), blank=True)
    is_default = models.BooleanField(_("default device"), default=False)
    daily_limit = models.PositiveIntegerField(_("daily limit"), default=_default_daily_limit)
    gap_seconds = models.FloatField(_("seconds between sends"), default=_default_gap)
    batch_size = models.PositiveIntegerField(_("batch size"), default=_default_batch_size)
    batch_pause_seconds = models.FloatField(_("pause after a batch (s)"), default=_default_batch_pause)
    time_zone = models.CharField(
        _("time zone"),
        max_length=64,
        default=_default_time_zone,
        validators=[validate_time_zone],
        help_text=_("The send window's clock, e.g. Europe/Paris (the daily quota stays per UTC day)."),
    )
    send_window = models.CharField(
        _("send window"),
        max_length=300,
        default=_default_send_window,
        validators=[validate_send_window],
        help_text=_(
            "When Message 1 may go out, wall time in the time zone: “always”, or days and times such as "
            "“mon-fri 09:00-20:00; sat 10:00-13:00”. A Message 2 may follow a reply outside it for a while."
        ),
    )
    number_since = models.DateField(
        _("number in use since"),
        default=_today,
        help_text=_("The number's first day of sending: a young number's daily limit ramps up (warm-up)."),
    )
    # Sending state, written only by the sender holding the lease.
    last_sent_at = models.DateTimeField(_("last send"), null=True, blank=True, editable=False)
    sent_in_batch = models.PositiveIntegerField(_("sends in this batch"), default=0, editable=False)
    paused_until = models.DateTimeField(_("paused until"), null=True, blank=True, editable=False)
    # Jitter's draws (pacing.DeviceState), kept so that a restarted sender keeps the rhythm.
    next_gap_seconds = models.FloatField(null=True, blank=True, editable=False)
    batch_target = models.PositiveIntegerField(null=True, blank=True, editable=False)
    halted_at = models.DateTimeField(
        _("halted at"),
        null=True,
        blank=True,
        help_text=_("Sending stops while set (bad token, number disconnected). Clear it to resume."),
    )
    halted_reason = models.TextField(_("why halted"), blank=True)
    # When an operator last resumed it: only later sends count towards a halt on trouble.
    resumed_at = models.DateTimeField(_("resumed at"), null=True, blank=True, editable=False)
    # What Wassenger last said of the number (a `number:session` event, the 2-minute check).
    session_status = models.CharField(_("WhatsApp session"), max_length=32, blank=True, editable=False)
    wassenger_status = models.CharField(_("status at Wassenger"), max_length=32, blank=True, editable=False)
    plan = models.CharField(_("Wassenger plan"), max_length=64, blank=True, editable=False)
    health_checked_at = models.DateTimeField(_("checked at Wassenger"), null=True, blank=True, editable=False)
    # One sender per device: the lease is taken and renewed by a conditional UPDATE.
    lease_owner = models.CharField(max_length=36, blank=True, editable=False)
    lease_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The device's link to Wassenger (its circuit breaker, messaging/retries.py): failures in a
    # row that were the link's (no answer, 5xx, 429), and since when it has been failing.
    link_failures = models.PositiveIntegerField(_("link failures in a row"), default=0, editable=False)
    link_down_since = models.DateTimeField(_("unreachable since"), null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    # Written by the sender holding the lease (and the breaker): a form saving the device,
    # which read them a while ago, must never write them back (DeviceAdmin.save_model).
    SENDER_FIELDS = (
        "last_sent_at",
        "sent_in_batch",
        "paused_until",
        "next_gap_seconds",
        "batch_target",
        "lease_owner",
        "lease_expires_at",
        "link_failures",
        "link_down_since",
    )

    class Meta:
        ordering = ["label"]
        verbose_name = _("device")
        verbose_name_plural = _("devices")
        constraints = [
            models.UniqueConstraint(
                fields=["wassenger_id"], condition=~Q(wassenger_id=""), name="device_wassenger_id_unique"
            ),
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="device_single_default"
            ),
            models.CheckConstraint(
                condition=Q(phone="") | Q(phone__regex=E164_REGEX), name="device_phone_e164"
            ),
            models.CheckConstraint(condition=Q(gap_seconds__gte=0), name="device_gap_not_negative"),
            models.CheckConstraint(condition=Q(batch_size__gte=1), name="device_batch_size_positive"),
            models.CheckConstraint(
                condition=Q(batch_pause_seconds__gte=0), name="device_batch_pause_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return self.label

    def unreachable(self, now) -> bool:
        """Its link to Wassenger has failed for longer than the incident threshold."""
        since = self.link_down_since
        return (
            since is not None and (now - since).total_seconds() > settings.DEVICE_UNREACHABLE_INCIDENT_SECONDS
        )


class SenderLoop(models.Model):
    """A running sender loop (messaging/loop.py), seen at each lease renewal: loops count
    each other to share the devices fairly. A row older than a lease is a dead loop's."""

    owner = models.CharField(max_length=36, unique=True)
    host = models.CharField(max_length=255, blank=True)
    pid = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField()
    devices = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = _("sender loop")
        verbose_name_plural = _("sender loops")

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}"


class DeviceDay(models.Model):
    """Sends of one device on one UTC day: the daily quota counter.

    A new day is a new row, so a new day starts at zero by itself and no midnight reset
    can race with a send. The sender increments it with an UPDATE guarded by the limit.
    """

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="days")
    day = models.DateField(_("UTC day"))
    message_1_count = models.PositiveIntegerField(_("Message 1 sends"), default=0)
    message_2_count = models.PositiveIntegerField(_("Message 2 sends"), default=0)

    class Meta:
        ordering = ["-day", "device"]
        verbose_name = _("device day")
        verbose_name_plural = _("device days")
        constraints = [
            models.UniqueConstraint(fields=["device", "day"], name="device_day_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.device} {self.day}"

    @property
    def total(self) -> int:
        return self.message_1_count + self.message_2_count


class MessageKind(models.TextChoices):
    MESSAGE_1 = "message_1", _("Message 1")
    MESSAGE_2 = "message_2", _("Message 2")
    # Message 1 as a contact would read it, sent to a number the operator typed
    # (campaigns/test_send.py): paced and counted in the device's day like a Message 1,
    # never in the campaign's figures, which count Message 1 and Message 2 by kind.
    TEST = "test", _("test send")
    # The campaign's acknowledgement of a stop word, sent once to the contact who wrote it
    # (webhooks/replies.py): an answer, like Message 2, so it is paced and counted as one.
    OPT_OUT = "opt_out", _("opt-out confirmation")

    @classmethod
    def paced_as(cls, kind: str) -> str:
        """The kind whose quota and priority a send of `kind` takes: a test is a Message 1, an
        opt-out confirmation a Message 2."""
        return {cls.TEST: cls.MESSAGE_1, cls.OPT_OUT: cls.MESSAGE_2}.get(kind, kind)

    @classmethod
    def attachment_of(cls, kind: str) -> str | None:
        """Whose attachment a send of `kind` carries: a test Message 1's; a confirmation none."""
        return None if kind == cls.OPT_OUT else cls.paced_as(kind)

    @classmethod
    def beyond_the_campaign(cls) -> tuple[str, ...]:
        """Kinds that leave whatever their campaign's status (a test of a draft; a confirmation
        owed to a contact once they opted out, even when the campaign is paused or completed)."""
        return (cls.TEST, cls.OPT_OUT)


class MessageStatus(models.TextChoices):
    PENDING = "pending", _("pending")
    SENDING = "sending", _("sending")
    SENT = "sent", _("sent")
    DELIVERED = "delivered", _("delivered")
    READ = "read", _("read")
    FAILED = "failed", _("failed")
    CANCELLED = "cancelled", _("cancelled")
    UNKNOWN = "unknown", _("outcome unknown")


# Why a message was cancelled without being sent (its last_error).
CANCELLED_WITH_CAMPAIGN = "cancelled with the campaign"
CANCELLED_OPTED_OUT = "cancelled: the contact opted out"

# Wassenger accepted these: sent_at must be known [legacy 4.2].
ACCEPTED_STATUSES = (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ)
# Not settled yet: still to send, being sent, or waiting for reconciliation.
OPEN_STATUSES = (MessageStatus.PENDING, MessageStatus.SENDING, MessageStatus.UNKNOWN)


# Kinds whose pending rows are also indexed by device (message_due_not_message_1).
BY_DEVICE_KINDS = [MessageKind.MESSAGE_2, MessageKind.TEST, MessageKind.OPT_OUT]

# A device's sends, as its log lists them: messages it tried or took on, and every test send
# (queued ones too, so that the operator sees theirs waiting); each at when it went out or
# failed, else when it is due. One definition for the page and for its index.
DEVICE_LOG_SENDS = (
    Q(attempts__gt=0) | Q(sent_at__isnull=False) | Q(failed_at__isnull=False) | Q(kind=MessageKind.TEST)
)
DEVICE_LOG_TIME = Coalesce("sent_at", "failed_at", "next_attempt_at")


class Message(models.Model):
    """One WhatsApp message to one contact: a campaign's Message 1 or its follow-up."""

    # No index of its own on campaign: the (campaign, status) index starts with it. Fewer
    # index writes make launch faster (bench/launch.py).
    # Nor a foreign key of its own, nor on device: one composite key, (campaign, device) →
    # the campaign's (id, device), checks both (messaging/migrations/0006, which Django
    # cannot declare here). It also holds the message to its campaign's device, and costs
    # a launch one check per message instead of two.
    campaign = models.ForeignKey(
        "campaigns.Campaign",
        on_delete=models.CASCADE,
        related_name="messages",
        db_index=False,
        db_constraint=False,
    )
    # Nor on contact alone: the unique (contact, campaign, kind) index starts with it.
    contact = models.ForeignKey(
        "campaigns.Contact", on_delete=models.PROTECT, related_name="messages", db_index=False
    )
    # Copied from the campaign so that "next due message of this device" is one index probe
    # per sending campaign (the partial index below); nothing needs an index on device alone.
    device = models.ForeignKey(
        Device, on_delete=models.PROTECT, related_name="messages", db_index=False, db_constraint=False
    )
    kind = models.CharField(_("kind"), max_length=10, choices=MessageKind)
    # A test send's number, as the operator typed it (normalised); empty: the contact's own.
    phone = E164PhoneField(_("sent to"), blank=True, default="", db_default="")
    content = models.TextField(_("content"), blank=True)
    # A test send's own key (campaigns/test_send.py); NULL for a campaign's messages.
    test_key = models.UUIDField(null=True, blank=True, editable=False)
    # Message 1 only, when its campaign has several variants: which one (1, 2, …) it got at launch.
    variant = models.PositiveSmallIntegerField(_("variant"), null=True, blank=True)
    status = models.CharField(
        _("status"),
        max_length=10,
        choices=MessageStatus,
        default=MessageStatus.PENDING,
        db_default=MessageStatus.PENDING,
    )
    # Sent to Wassenger as `reference`: how a receipt or a lost response finds its row.
    reference = models.UUIDField(
        _("reference"), unique=True, default=uuid.uuid4, db_default=RandomUUID(), editable=False
    )
    wassenger_id = models.CharField(_("Wassenger id"), max_length=64, blank=True, db_default="")
    whatsapp_id = models.CharField(_("WhatsApp id"), max_length=128, blank=True, db_default="")
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0, db_default=0)
    next_attempt_at = models.DateTimeField(_("next attempt at"), default=_now, db_default=Now())
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)
    read_at = models.DateTimeField(_("read at"), null=True, blank=True)
    failed_at = models.DateTimeField(_("failed at"), null=True, blank=True)
    replied_at = models.DateTimeField(_("replied at"), null=True, blank=True)
    # Message 1 only: set when 24 h passed with no reply; a later reply triggers nothing [7.1].
    window_expired_at = models.DateTimeField(_("reply window expired at"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True, db_default="")
    # Set, under this row's lock, by a webhook event that waits for this send's outcome; the
    # statement that settles the send returns it, so the event is processed at once (a lock
    # wait makes the flag and the settling meet in the same row version: neither can miss it).
    events_waiting = models.BooleanField(default=False, db_default=False, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_default=Now())
    updated_at = models.DateTimeField(auto_now=True, db_default=Now())

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        constraints = [
            # Contact first: it also serves "this contact's messages" (replies, opt-outs), so
            # launch writes one index fewer; the (campaign, status) index serves the campaign.
            # A test send may be repeated: each has a key of its own, a campaign's own messages
            # none (NULL, and NULLs count as equal here), so they stay once per contact. Not a
            # partial index: "this contact's messages" must be able to use it whatever the kind.
            models.UniqueConstraint(
                fields=["contact", "campaign", "kind", "test_key"],
                nulls_distinct=False,
                name="message_once_per_campaign_contact_kind",
            ),
            models.CheckConstraint(
                condition=~Q(kind=MessageKind.TEST) | ~Q(phone=""), name="message_test_has_phone"
            ),
            models.CheckConstraint(condition=Q(kind__in=MessageKind.values), name="message_kind_valid"),
            models.CheckConstraint(condition=Q(status__in=MessageStatus.values), name="message_status_valid"),
            models.CheckConstraint(
                condition=~Q(status__in=ACCEPTED_STATUSES) | Q(sent_at__isnull=False),
                name="message_accepted_has_sent_at",
            ),
        ]
        indexes = [
            models.Index(fields=["campaign", "status"], name="message_campaign_status"),
            # The campaign page's timeline, one row per recipient in contact order: a page of
            # it is an index range, not a sort of every recipient of a 100,000-contact campaign.
            models.Index(fields=["campaign", "kind", "contact"], name="message_timeline"),
            models.Index(fields=["wassenger_id"], condition=~Q(wassenger_id=""), name="message_wassenger_id"),
            models.Index(fields=["whatsapp_id"], condition=~Q(whatsapp_id=""), name="message_whatsapp_id"),
            # A day's figures, the hourly chart and the daily report read ranges of these
            # (monitoring/figures.py): partial, so a launch, whose rows have none, pays nothing.
            *[
                models.Index(
                    fields=[field], condition=Q(**{f"{field}__isnull": False}), name=f"message_{field}"
                )
                for field in ("sent_at", "delivered_at", "read_at", "failed_at", "replied_at")
            ],
            # Open reply windows only (the hourly expiry): a year of closed ones is not walked.
            models.Index(
                fields=["sent_at"],
                condition=Q(kind=MessageKind.MESSAGE_1, replied_at=None, window_expired_at=None)
                & Q(sent_at__isnull=False),
                name="message_open_window",
            ),
            # In flight or unknown (the dispatcher's orphans and reconciliation, /health/'s stuck).
            models.Index(
                fields=["status", "updated_at"],
                condition=Q(status__in=[MessageStatus.SENDING, MessageStatus.UNKNOWN]),
                name="message_unsettled",
            ),
            # The claim: per sending campaign of the device, its next due message (messaging/claims.py),
            # Message 2 first, then oldest, so that paused and scheduled campaigns' waiting messages
            # are never walked. It replaced one led by device, which every claim walked through them;
            # anything counting a device's pending messages goes through its campaigns too.
            models.Index(
                fields=["campaign", "device", "-kind", "id"],
                condition=Q(status=MessageStatus.PENDING),
                name="message_due_by_campaign",
            ),
            # A device's pending answers and test sends (Message 2, opt-out confirmations, tests:
            # a handful at any time), which the claim, the snapshot and the loop's poll look up by
            # device; the others leave through their campaigns (the index above). A launch's
            # Message 1 rows are not in it.
            models.Index(
                fields=["device", "-kind", "id"],
                condition=Q(status=MessageStatus.PENDING) & Q(kind__in=BY_DEVICE_KINDS),
                name="message_due_not_message_1",
            ),
            # The device's log (monitoring/device_log.py): its sends, newest first, an index range
            # whatever the device's history; a launch's pending rows are not in it.
            models.Index(
                F("device"),
                DEVICE_LOG_TIME.desc(),
                F("id").desc(),
                condition=DEVICE_LOG_SENDS,
                name="message_device_log",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} → {self.contact_id} ({self.status})"


class AttemptOutcome(models.TextChoices):
    IN_FLIGHT = "in_flight", _("in flight")
    ACCEPTED = "accepted", _("accepted")
    RATE_LIMITED = "rate_limited", _("rate limited")
    TRANSIENT = "transient", _("temporary error")
    INVALID_NUMBER = "invalid_number", _("invalid number")
    AUTH_ERROR = "auth_error", _("authentication error")
    REJECTED = "rejected", _("rejected")
    UNKNOWN = "unknown", _("outcome unknown")


class MessageAttempt(models.Model):
    """One request to Wassenger for one message: the visible trail of the retry policy."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveSmallIntegerField(_("attempt"))
    started_at = models.DateTimeField(_("started at"))
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    outcome = models.CharField(
        _("outcome"), max_length=16, choices=AttemptOutcome, default=AttemptOutcome.IN_FLIGHT
    )
    http_status = models.PositiveSmallIntegerField(_("HTTP status"), null=True, blank=True)
    error = models.TextField(_("error"), blank=True)

    class Meta:
        ordering = ["message", "number"]
        verbose_name = _("message attempt")
        verbose_name_plural = _("message attempts")
        constraints = [
            models.UniqueConstraint(fields=["message", "number"], name="attempt_number_unique"),
        ]
        indexes = [
            # Retention removes the oldest first (messaging/retention.py); the rest only in flight.
            models.Index(fields=["started_at"], name="attempt_started_at"),
            models.Index(fields=["id"], condition=Q(outcome="in_flight"), name="attempt_in_flight"),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number}: {self.outcome}"
