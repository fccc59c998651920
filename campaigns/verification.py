"""WhatsApp number checks: is this contact's phone on WhatsApp? (Wassenger's numbers/exists)

`contact_check` checks one contact and stores the answer (valid / invalid and when).
`verification_start` records a `VerificationJob` for chosen contacts, a category or a
campaign's recipients and enqueues ONE task on the verify cluster, so that checking
10,000 numbers never takes a worker from the senders. `verification_run` (that task)
works through the contacts still due, one every VERIFY_GAP_SECONDS, storing each result
as it comes: a killed run loses nothing, and running it again carries on where it
stopped, since a contact checked within VERIFY_RECHECK_DAYS is no longer due.
Opted-out contacts are never checked: nothing will be sent to them.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django_q.tasks import async_task

from campaigns.contacts import contact_whatsapp_record
from campaigns.models import (
    Campaign,
    Category,
    Contact,
    VerificationJob,
    VerificationStatus,
)
from config import clock
from config.logging import phone_mask
from messaging.wassenger import AuthError, InvalidNumber, RateLimited, WassengerError, check_number
from monitoring.health import VERIFY, heartbeat_beat

logger = logging.getLogger(__name__)

LEASE_SECONDS = 300  # a run that has not recorded progress for this long is presumed dead
RATE_LIMIT_ATTEMPTS = 5  # 429s in a row on one number before it is left for the next run
SKIPPED = "skipped"


# --- One contact ----------------------------------------------------------------------------


def contact_check(*, contact: Contact) -> str:
    """Ask Wassenger whether `contact` is on WhatsApp, store the answer, return the status.

    Raises the client's RateLimited, AuthError, Transient… when no answer came.
    """
    try:
        exists = check_number(contact.phone).exists
    except InvalidNumber:
        exists = False  # Wassenger refuses the number itself: nothing can ever reach it
    return contact_whatsapp_record(contact_id=contact.pk, on_whatsapp=exists)


def contacts_due(contacts: QuerySet[Contact], *, now=None) -> QuerySet[Contact]:
    """Those of `contacts` to check: never checked or checked too long ago, and not opted out."""
    fresh_since = (now or clock.now()) - timedelta(days=settings.VERIFY_RECHECK_DAYS)
    stale = Q(whatsapp_checked_at__isnull=True) | Q(whatsapp_checked_at__lt=fresh_since)
    return contacts.filter(stale, opted_out_at__isnull=True)


# --- Starting a job -------------------------------------------------------------------------


@transaction.atomic
def verification_start(
    *,
    contacts: QuerySet[Contact] | None = None,
    category: Category | None = None,
    campaign: Campaign | None = None,
    by=None,
) -> VerificationJob:
    """Record a check of one scope and enqueue its run once committed. With nothing due, the
    job is done at once and no task is enqueued."""
    job = VerificationJob(category=category, campaign=campaign, created_by=_user(by))
    if contacts is not None:
        job.contact_ids = list(contacts.values_list("pk", flat=True))
    job.label = _label(job)
    job.total = contacts_due(job_contacts(job)).count()
    if not job.total:
        job.status, job.finished_at = VerificationStatus.DONE, clock.now()
    job.save()
    if job.total:
        verification_enqueue(job)
    return job


def verification_enqueue(job: VerificationJob) -> None:
    transaction.on_commit(
        lambda: async_task(
            "campaigns.tasks.verification_job_run",
            job.pk,
            cluster=settings.VERIFY_CLUSTER,
            task_name=f"verify numbers job {job.pk}",
        )
    )


def job_contacts(job: VerificationJob) -> QuerySet[Contact]:
    """Every contact in the job's scope, due or not."""
    if job.category_id:
        return Contact.objects.filter(categories=job.category_id)
    if job.campaign_id:
        members = Contact.categories.through.objects.filter(category__campaigns=job.campaign_id)
        return Contact.objects.filter(pk__in=members.values("contact_id"))
    return Contact.objects.filter(pk__in=job.contact_ids)


def _label(job: VerificationJob) -> str:
    if job.category_id:
        return _("Category “%(name)s”") % {"name": job.category.name}
    if job.campaign_id:
        return _("Recipients of campaign “%(name)s”") % {"name": job.campaign.name}
    count = len(job.contact_ids)
    return ngettext("%(count)d chosen contact", "%(count)d chosen contacts", count) % {"count": count}


def _user(by):
    return by if getattr(by, "pk", None) else None


# --- Running a job --------------------------------------------------------------------------


def verification_run(*, job_id: int) -> VerificationJob | None:
    """Check the job's due contacts one by one, paced; None when another run holds the job."""
    job = _claim(job_id)
    if job is None:
        return None
    try:
        _work_through(job)
    except AuthError as error:
        logger.error("verification job %s stopped: %s", job.pk, error)
        return _finish(job, VerificationStatus.FAILED, error=str(error))
    return _finish(job, VerificationStatus.DONE)


def _claim(job_id: int) -> VerificationJob | None:
    """Take the job unless a live run holds it; a run killed mid-way lets its lease lapse."""
    now = clock.now()
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    open_statuses = (VerificationStatus.PENDING, VerificationStatus.RUNNING)
    claimed = VerificationJob.objects.filter(free, pk=job_id, status__in=open_statuses).update(
        status=VerificationStatus.RUNNING, lease_until=now + timedelta(seconds=LEASE_SECONDS), error=""
    )
    if not claimed:
        return None
    VerificationJob.objects.filter(pk=job_id, started_at__isnull=True).update(started_at=now)
    return VerificationJob.objects.get(pk=job_id)


def _work_through(job: VerificationJob) -> None:
    """Contacts in id order after the last one tried, so that a skipped one is not retried
    in a loop: it stays due and the next run takes it."""
    last_id, first = 0, True
    while contact := contacts_due(job_contacts(job)).filter(pk__gt=last_id).order_by("pk").first():
        if not first:
            clock.sleep(settings.VERIFY_GAP_SECONDS)
        first = False
        _record(job, _check_patiently(job, contact))
        last_id = contact.pk


def _check_patiently(job: VerificationJob, contact: Contact) -> str:
    """The contact's status, or SKIPPED after a temporary failure; AuthError goes up."""
    for _attempt in range(RATE_LIMIT_ATTEMPTS):
        try:
            return contact_check(contact=contact)
        except RateLimited as error:
            wait = max(error.retry_after or 0, settings.RATE_LIMIT_MIN_WAIT_SECONDS)
            _renew(job, extra=wait)
            clock.sleep(wait)
        except AuthError:
            raise
        except WassengerError as error:
            logger.warning("verification job %s: %s skipped: %s", job.pk, phone_mask(contact.phone), error)
            return SKIPPED
    return SKIPPED


def _record(job: VerificationJob, outcome: str) -> None:
    # A bulk check keeps the cluster's only worker busy for long: its progress is the
    # cluster's heartbeat meanwhile (the one-minute heartbeat task waits behind it).
    heartbeat_beat(VERIFY)
    counters = {outcome: F(outcome) + 1}
    if outcome != SKIPPED:
        counters["done"] = F("done") + 1
    lease = clock.now() + timedelta(seconds=LEASE_SECONDS)
    VerificationJob.objects.filter(pk=job.pk).update(lease_until=lease, **counters)


def _renew(job: VerificationJob, *, extra: float) -> None:
    lease = clock.now() + timedelta(seconds=LEASE_SECONDS + extra)
    VerificationJob.objects.filter(pk=job.pk).update(lease_until=lease)


def _finish(job: VerificationJob, status: str, *, error: str = "") -> VerificationJob:
    now = clock.now()
    VerificationJob.objects.filter(pk=job.pk).update(
        status=status, error=error, finished_at=now, lease_until=None
    )
    job.refresh_from_db()
    logger.info("verification job %s %s: %d valid, %d invalid", job.pk, status, job.valid, job.invalid)
    return job
