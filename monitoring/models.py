from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class Heartbeat(models.Model):
    """The last time a cluster's health check ran: dead workers cannot say they are dead,
    so the web side judges them by the age of this row."""

    name = models.CharField(max_length=50, unique=True)
    beat_at = models.DateTimeField()
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name = _("heartbeat")
        verbose_name_plural = _("heartbeats")

    def __str__(self) -> str:
        return f"{self.name} @ {self.beat_at:%Y-%m-%d %H:%M:%S}"


class Incident(models.Model):
    """A condition that needs an operator (quota level, workers down, device halted, failures).

    At most one open incident per (kind, key): a condition lasting an hour is one incident,
    one email when it opens and one when it closes.
    """

    kind = models.CharField(_("kind"), max_length=30)
    key = models.CharField(_("key"), max_length=100)
    summary = models.TextField(_("summary"))
    opened_at = models.DateTimeField(_("opened at"))
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)

    class Meta:
        ordering = ["-opened_at"]
        verbose_name = _("incident")
        verbose_name_plural = _("incidents")
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "key"], condition=Q(closed_at__isnull=True), name="incident_one_open_per_key"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.key}"


class DailyReport(models.Model):
    """One row per closed UTC day: the rollover's report is sent once."""

    day = models.DateField(unique=True)
    figures = models.JSONField(default=list)
    sent_at = models.DateTimeField()

    class Meta:
        ordering = ["-day"]
        verbose_name = _("daily report")
        verbose_name_plural = _("daily reports")

    def __str__(self) -> str:
        return str(self.day)
