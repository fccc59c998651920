"""Incidents and the emails about them: each condition mails the admins once when it
starts and once when it ends, however often it is checked in between [legacy 8.4]."""

import logging

from django.conf import settings
from django.core.mail import mail_admins
from django.db import IntegrityError, transaction

from config import clock
from monitoring.models import Incident

logger = logging.getLogger(__name__)


def incident_open(*, kind: str, key: str, summary: str) -> bool:
    """Open the incident unless it is already open; True (and one email) if it is new."""
    try:
        with transaction.atomic():
            Incident.objects.create(kind=kind, key=key, summary=summary, opened_at=clock.now())
    except IntegrityError:  # already open: the unique constraint is the de-duplication
        return False
    logger.error("incident opened: %s", summary)
    _notify(summary, summary)
    return True


def incident_close(*, kind: str, key: str, summary: str = "") -> bool:
    """Close the open incident, if any; True (and one email) if one was open."""
    with transaction.atomic():
        incident = Incident.objects.select_for_update().filter(kind=kind, key=key, closed_at=None).first()
        if incident is None:
            return False
        incident.closed_at = clock.now()
        incident.save(update_fields=["closed_at"])
    text = summary or f"Resolved: {incident.summary}"
    logger.warning("incident closed: %s", text)
    _notify(text, text)
    return True


def incident_sync(*, kind: str, key: str, active: bool, summary: str) -> None:
    """Open or close the incident to match whether its condition holds now."""
    if active:
        incident_open(kind=kind, key=key, summary=summary)
    else:
        incident_close(kind=kind, key=key)


def _notify(subject: str, body: str) -> None:
    # An unreachable mail server must not stop the checks that found the problem.
    try:
        mail_admins(subject[:200], body, fail_silently=False)
    except Exception:
        logger.exception("could not email the admins (%s)", settings.EMAIL_BACKEND)
