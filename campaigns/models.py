from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from campaigns.media import media_valid
from campaigns.phones import E164_REGEX, E164PhoneField
from campaigns.rendering import SpintaxError, spintax_expand
from config import clock


# JSON the admin's text boxes accept must have the shape the rest of Relance reads (the API's
# serializers check the same): a list where it asks for an object crashes the launch page.
def json_object(value) -> None:
    if not isinstance(value, dict):
        raise ValidationError(_('Expected an object, e.g. {"city": "Lyon"}.'), code="not_an_object")


def json_object_of_texts(value) -> None:
    json_object(value)
    if not all(isinstance(text, str) for text in value.values()):
        raise ValidationError(_('Every value must be a text, e.g. {"first_name": "there"}.'), code="not_text")


def json_list_or_object(value) -> None:
    if not isinstance(value, list | dict):
        raise ValidationError(_("Expected a list or an object."), code="not_a_list_or_object")


def spintax_valid(value: str) -> None:
    """Message 1's braces make valid `{a|b}` groups: the editor says where they do not."""
    try:
        spintax_expand(value)
    except SpintaxError as error:
        raise ValidationError(str(error), code="spintax") from error


def variant_texts(value) -> None:
    if not isinstance(value, list) or not all(isinstance(text, str) and text.strip() for text in value):
        raise ValidationError(_('Expected a list of texts, e.g. ["Hello {{ first_name }}", "Hi!"].'))
    for number, text in enumerate(value, start=1):
        try:
            spintax_expand(text)
        except SpintaxError as error:
            facts = {"number": number, "error": error}
            raise ValidationError(_("Variant %(number)d: %(error)s") % facts, code="spintax") from error


def _attachment_field(verbose_name, help_text) -> models.FileField:
    """One attachment of a message, checked on upload (campaigns/media.py)."""
    return models.FileField(
        verbose_name,
        upload_to="campaigns/%Y/%m/",
        max_length=255,
        blank=True,
        validators=[media_valid],
        help_text=help_text,
    )


def _default_fatigue_days() -> int:
    return settings.LAUNCH_FATIGUE_DAYS


class Category(models.Model):
    name = models.CharField(_("name"), max_length=120, unique=True)
    description = models.TextField(_("description"), blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("category")
        verbose_name_plural = _("categories")

    def __str__(self) -> str:
        return self.name


class WhatsAppStatus(models.TextChoices):
    UNKNOWN = "unknown", _("not checked")
    VALID = "valid", _("on WhatsApp")
    INVALID = "invalid", _("not on WhatsApp")


class Contact(models.Model):
    phone = E164PhoneField(_("phone"), unique=True, help_text=_("Any format; stored as E.164."))
    name = models.CharField(_("name"), max_length=200, blank=True)
    first_name = models.CharField(_("first name"), max_length=200, blank=True)
    fields = models.JSONField(
        _("other fields"),
        default=dict,
        blank=True,
        # Texts only: Message 1 is rendered in SQL and Message 2 in Python, and only a text
        # reads the same in both (true / True, 1e-05 / 0.00001).
        validators=[json_object_of_texts],
        help_text=_("Free-form, used in messages."),
    )
    categories = models.ManyToManyField(Category, related_name="contacts", blank=True)
    opted_out_at = models.DateTimeField(_("opted out at"), null=True, blank=True)
    whatsapp_status = models.CharField(
        _("WhatsApp"), max_length=10, choices=WhatsAppStatus, default=WhatsAppStatus.UNKNOWN
    )
    whatsapp_checked_at = models.DateTimeField(_("WhatsApp checked at"), null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "first_name", "phone"]
        verbose_name = _("contact")
        verbose_name_plural = _("contacts")
        indexes = [
            # The contact lists' order: a page is an index range, not a sort of every contact.
            models.Index(fields=["name", "first_name", "phone"], name="contact_by_name"),
            # Opt-outs of a day (figures) and of the last days (the dispatcher).
            models.Index(
                fields=["opted_out_at"], condition=Q(opted_out_at__isnull=False), name="contact_opted_out_at"
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(phone__regex=E164_REGEX), name="contact_phone_e164"),
            models.CheckConstraint(
                condition=Q(whatsapp_status__in=WhatsAppStatus.values),
                name="contact_whatsapp_status_valid",
            ),
        ]

    def __str__(self) -> str:
        full_name = " ".join(part for part in (self.first_name, self.name) if part)
        return f"{full_name} ({self.phone})" if full_name else self.phone


class CampaignStatus(models.TextChoices):
    DRAFT = "draft", _("draft")
    SCHEDULED = "scheduled", _("scheduled")
    SENDING = "sending", _("sending")
    PAUSED = "paused", _("paused")
    COMPLETED = "completed", _("completed")
    CANCELLED = "cancelled", _("cancelled")


FINAL_CAMPAIGN_STATUSES = frozenset({CampaignStatus.COMPLETED, CampaignStatus.CANCELLED})

# The only moves a campaign can make; anything not here is refused by `transition_to`.
CAMPAIGN_TRANSITIONS = {
    CampaignStatus.DRAFT: {CampaignStatus.SCHEDULED, CampaignStatus.SENDING},
    CampaignStatus.SCHEDULED: {CampaignStatus.SENDING},
    CampaignStatus.SENDING: {CampaignStatus.PAUSED, CampaignStatus.COMPLETED},
    CampaignStatus.PAUSED: {CampaignStatus.SENDING},
    # Reopened by "send the failed ones again" (campaigns/lifecycle.py campaign_retry_failed).
    CampaignStatus.COMPLETED: {CampaignStatus.SENDING},
    CampaignStatus.CANCELLED: set(),
}
for _status in set(CampaignStatus) - FINAL_CAMPAIGN_STATUSES:
    CAMPAIGN_TRANSITIONS[_status].add(CampaignStatus.CANCELLED)


# What Message 1s are built from at launch: changing it afterwards would change nothing
# already queued (or, for the start time, disagree with it), so it freezes at launch. Name,
# Message 2 and the fallbacks stay editable: Message 2 is rendered when a reply creates it,
# from the campaign as it is then, so fixing a typo in it while the campaign runs is useful.
FROZEN_AFTER_LAUNCH = (
    "devices",
    "categories",
    "message_1_text",
    "message_1_variants",
    "message_1_media",
    "message_1_template_name",
    "message_1_template_language",
    "message_1_template_variables",
    "starts_at",
    "fatigue_days",
    "skip_other_campaigns",
)
# The one list of columns a status move writes (`Campaign.status_save`).
STATUS_FIELDS = ["status", "launched_at", "launched_by", "finished_at", "updated_at"]


class FailedRetry(models.Model):
    """An operator's "send the failed ones again": who, when, and how many went back."""

    campaign = models.ForeignKey("Campaign", on_delete=models.CASCADE, related_name="failed_retries")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, verbose_name=_("by")
    )
    requested_at = models.DateTimeField(_("at"))
    messages_retried = models.PositiveIntegerField(_("messages sent again"))

    class Meta:
        ordering = ["-requested_at"]
        verbose_name = _("retry of failed messages")
        verbose_name_plural = _("retries of failed messages")

    def __str__(self) -> str:
        return f"{self.campaign_id}: {self.messages_retried} @ {self.requested_at:%Y-%m-%d %H:%M}"


class InvalidTransition(ValueError):
    """A campaign was asked to move to a status it cannot reach from where it is."""


class Campaign(models.Model):
    name = models.CharField(_("name"), max_length=200)
    # Each recipient's Message 1 is given one of them at launch (campaigns/launch.py). The
    # link table's unique (campaign, device) pair is what every message's composite foreign
    # key refers to (messaging/migrations/0009): the database holds each message to one of
    # its campaign's devices, and refuses taking a device away from a campaign that uses it.
    devices = models.ManyToManyField(
        "messaging.Device",
        related_name="campaigns",
        verbose_name=_("devices"),
        help_text=_("The numbers it sends from; recipients are shared between them at launch."),
    )
    categories = models.ManyToManyField(Category, related_name="campaigns", verbose_name=_("categories"))
    message_1_text = models.TextField(
        _("Message 1"),
        blank=True,
        validators=[spintax_valid],
        help_text=_(
            "Use {{ first_name }}, {{ name }} or any contact field; {Hello|Hi|Bonjour} makes variants, "
            "one chosen per recipient."
        ),
    )
    message_1_variants = models.JSONField(
        _("other variants of Message 1"),
        default=list,
        blank=True,
        validators=[variant_texts],
        help_text=_(
            "More texts for Message 1, as a list; recipients are dealt every variant in turn, "
            'e.g. ["Hi {{ first_name }}!", "{Hello|Good morning}"].'
        ),
    )
    message_1_media = _attachment_field(
        _("Message 1 attachment"),
        _(
            "An image (JPEG, PNG, WebP, 5 MB), document (PDF, office, 100 MB), MP4 video or MP3/OGG "
            "audio (16 MB); the text is its caption."
        ),
    )
    message_1_template_name = models.CharField(
        _("Message 1 WhatsApp template"),
        max_length=200,
        blank=True,
        help_text=_("Instead of text: an approved template (WhatsApp Business numbers only)."),
    )
    message_1_template_language = models.CharField(_("template language"), max_length=20, blank=True)
    message_1_template_variables = models.JSONField(
        _("template variables"), default=list, blank=True, validators=[json_list_or_object]
    )
    message_2_text = models.TextField(_("Message 2 (follow-up)"))
    message_2_media = _attachment_field(
        _("Message 2 attachment"), _("As for Message 1; the follow-up's text is its caption.")
    )
    opt_out_confirmation = models.TextField(
        _("opt-out confirmation"),
        blank=True,
        help_text=_(
            "Sent once to a contact who answers with a stop word, from the number they answered, "
            "e.g. “C'est noté, vous ne recevrez plus de messages de notre part.” Counted in the "
            "day's quota and paced like Message 2. Empty: none is sent."
        ),
    )
    # Wassenger's file id of each attachment uploaded for this campaign, by stored name
    # (campaigns/media.py): each file is uploaded once per campaign, a replaced one again.
    media_uploads = models.JSONField(default=dict, blank=True, editable=False)
    variable_fallbacks = models.JSONField(
        _("fallbacks for missing variables"),
        default=dict,
        blank=True,
        validators=[json_object_of_texts],
        help_text=_('Used when a contact lacks a variable, e.g. {"first_name": "there"}.'),
    )
    starts_at = models.DateTimeField(_("start at"), null=True, blank=True)
    fatigue_days = models.PositiveSmallIntegerField(
        _("skip contacts messaged in the last N days"),
        default=_default_fatigue_days,
        help_text=_(
            "Contacts who received a Message 1 from any campaign in these days are skipped; 0: none."
        ),
    )
    skip_other_campaigns = models.BooleanField(
        _("skip contacts of other campaigns in progress"),
        default=False,
        help_text=_(
            "Skip contacts who are in another campaign that is scheduled, sending or paused "
            "(waiting for their Message 1, or sent it and maybe replied)."
        ),
    )
    status = models.CharField(
        _("status"), max_length=10, choices=CampaignStatus, default=CampaignStatus.DRAFT, editable=False
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
    )
    launched_at = models.DateTimeField(_("launched at"), null=True, blank=True, editable=False)
    launched_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
        verbose_name=_("launched by"),
    )
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("campaign")
        verbose_name_plural = _("campaigns")
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=CampaignStatus.values), name="campaign_status_valid"
            ),
            models.CheckConstraint(
                condition=~Q(message_1_text="") | ~Q(message_1_template_name=""),
                name="campaign_message_1_text_or_template",
                violation_error_message=_("Message 1 needs a text or a WhatsApp template."),
            ),
            models.CheckConstraint(
                condition=~Q(message_1_template_name="") | Q(message_1_template_language=""),
                name="campaign_template_language_needs_template",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def device_ids(self) -> list[int]:
        """The campaign's devices, in the order they were added (the launch's split follows it)."""
        links = Campaign.devices.through.objects.filter(campaign_id=self.pk).order_by("pk")
        return list(links.values_list("device_id", flat=True))

    def devices_set(self, devices) -> None:
        """Make `devices` (rows or ids) the campaign's, in that order (the launch's split
        follows it); a draft's only, as every field frozen at launch."""
        wanted = [getattr(device, "pk", device) for device in devices]
        if self.device_ids() == wanted:
            return
        self.devices.clear()
        for device in wanted:  # one at a time: the links' ids keep the order
            self.devices.add(device)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_CAMPAIGN_STATUSES

    def can_transition_to(self, status: str) -> bool:
        return status in CAMPAIGN_TRANSITIONS[CampaignStatus(self.status)]

    def transition_to(self, status: str) -> None:
        """Move to `status` in memory (the caller saves), or raise InvalidTransition.

        Sets launched_at when a draft is launched and finished_at on a final move.
        """
        if not self.can_transition_to(status):
            reachable = sorted(CAMPAIGN_TRANSITIONS[CampaignStatus(self.status)])
            raise InvalidTransition(
                f"Campaign {self.name!r} cannot go from {self.status} to {status}; "
                f"from {self.status} it can go to: {', '.join(reachable) or 'nothing (final)'}."
            )
        if self.status == CampaignStatus.DRAFT and status != CampaignStatus.CANCELLED:
            self.launched_at = clock.now()
        self.status = status
        if status in FINAL_CAMPAIGN_STATUSES:
            self.finished_at = clock.now()
        else:  # a completed campaign reopened to send its failed messages again
            self.finished_at = None

    def status_save(self, status: str, *, by=None) -> None:
        """Move to `status` and save it with its timestamps: the only writer of a campaign's
        status. `by`, on a launch, is recorded as who launched it. The caller holds the row's
        lock (campaigns/lifecycle.py)."""
        launching = self.status == CampaignStatus.DRAFT and status != CampaignStatus.CANCELLED
        self.transition_to(status)
        if launching:
            self.launched_by = by if getattr(by, "pk", None) else None
        self.save(update_fields=STATUS_FIELDS)

    # --- What may change after launch (the admin and the API both ask these) ---

    def frozen_fields(self) -> tuple[str, ...]:
        """The fields that can no longer be edited: none while draft, then FROZEN_AFTER_LAUNCH."""
        return () if self.status == CampaignStatus.DRAFT else FROZEN_AFTER_LAUNCH

    def edit_refusal(self, fields) -> str | None:
        """Why changing `fields` is refused, or None when it is allowed."""
        frozen = [name for name in fields if name in self.frozen_fields()]
        if not frozen:
            return None
        return _("Campaign “%(name)s” is %(status)s: %(fields)s can no longer be changed.") % {
            "name": self.name,
            "status": self.get_status_display(),
            "fields": ", ".join(str(self._meta.get_field(name).verbose_name) for name in frozen),
        }

    def delete_refusal(self) -> str | None:
        """Why deleting the campaign is refused, or None: only a draft has nothing to lose.

        Deleting a launched campaign would delete its messages, the record of what was sent
        to whom (and, while it sends, the rows the senders are working on): cancel it instead.
        """
        if self.status == CampaignStatus.DRAFT:
            return None
        return _("Campaign “%(name)s” is %(status)s: only a draft can be deleted; cancel it instead.") % {
            "name": self.name,
            "status": self.get_status_display(),
        }


class VerificationStatus(models.TextChoices):
    PENDING = "pending", _("waiting")
    RUNNING = "running", _("running")
    DONE = "done", _("done")
    FAILED = "failed", _("failed")


class VerificationJob(models.Model):
    """One WhatsApp number check run (campaigns/verification.py): its scope and its progress.

    Exactly one scope: a category, a campaign's recipients, or chosen contacts (`contact_ids`).
    Each result is stored on its contact as it comes, so the counters here are only progress.
    """

    label = models.CharField(_("what"), max_length=250)
    category = models.ForeignKey(Category, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    contact_ids = models.JSONField(default=list, blank=True)
    status = models.CharField(
        _("status"), max_length=10, choices=VerificationStatus, default=VerificationStatus.PENDING
    )
    total = models.PositiveIntegerField(_("to check"), default=0)
    done = models.PositiveIntegerField(_("checked"), default=0)
    valid = models.PositiveIntegerField(_("on WhatsApp"), default=0)
    invalid = models.PositiveIntegerField(_("not on WhatsApp"), default=0)
    skipped = models.PositiveIntegerField(
        _("skipped for now"), default=0, help_text=_("Temporary Wassenger errors: checked on the next run.")
    )
    error = models.TextField(_("error"), blank=True)
    lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("WhatsApp number check")
        verbose_name_plural = _("WhatsApp number checks")
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=VerificationStatus.values), name="verification_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.label}: {self.done}/{self.total}"
