"""WhatsApp number checks (campaigns.verification), Wassenger faked at the HTTP boundary."""

from datetime import timedelta
from unittest import mock

import pytest
import responses
from django.conf import settings as django_settings
from django.urls import reverse

from campaigns.launch import launch_preview
from campaigns.models import Contact, VerificationJob, VerificationStatus, WhatsAppStatus
from campaigns.verification import contact_check, verification_run, verification_start
from tests import fake_wassenger
from tests.factories import make_campaign, make_category, make_contact

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(fake_clock):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        yield fake_wassenger.install(mocked)


@pytest.fixture
def enqueued(monkeypatch):
    """The tasks enqueued (they are run by hand, so each test sees one run at a time)."""
    calls = mock.Mock()
    monkeypatch.setattr("campaigns.verification.async_task", calls)
    return calls


def status(contact) -> str:
    return Contact.objects.get(pk=contact.pk).whatsapp_status


def category_of(*phones: str):
    category = make_category()
    contacts = [make_contact(phone=phone, categories=[category]) for phone in phones]
    return category, contacts


def start_and_run(django_capture_on_commit_callbacks, **scope) -> VerificationJob:
    with django_capture_on_commit_callbacks(execute=True):
        job = verification_start(**scope)
    return verification_run(job_id=job.pk)


def test_a_single_check_stores_valid_or_invalid_and_when(api, fake_clock):
    on_whatsapp, not_on = make_contact(phone="+33612345678"), make_contact(phone="+33612340000")

    assert contact_check(contact=on_whatsapp) == WhatsAppStatus.VALID
    assert contact_check(contact=not_on) == WhatsAppStatus.INVALID

    assert status(on_whatsapp) == "valid" and status(not_on) == "invalid"
    assert Contact.objects.get(pk=not_on.pk).whatsapp_checked_at == fake_clock.now()


def test_a_number_wassenger_refuses_as_invalid_is_marked_invalid(api):
    contact = make_contact(phone="+33612345678")
    api.script = ["invalid"]
    assert contact_check(contact=contact) == WhatsAppStatus.INVALID


def test_a_category_job_is_enqueued_on_the_verify_cluster_after_commit(
    api, enqueued, django_capture_on_commit_callbacks
):
    category, _contacts = category_of("+33612345678", "+33612345679")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job = verification_start(category=category)
    assert not enqueued.called  # nothing before the commit
    for callback in callbacks:
        callback()
    enqueued.assert_called_once()
    assert enqueued.call_args.args == ("campaigns.tasks.verification_job_run", job.pk)
    assert enqueued.call_args.kwargs["cluster"] == django_settings.VERIFY_CLUSTER == "verify"
    assert (job.total, job.status) == (2, VerificationStatus.PENDING)


def test_a_bulk_job_checks_every_number_paced_and_records_progress(
    api, enqueued, fake_clock, settings, django_capture_on_commit_callbacks
):
    settings.VERIFY_GAP_SECONDS = 2.0
    category, contacts = category_of("+33612345678", "+33612340000", "+33612345679")
    started = fake_clock.now()

    job = start_and_run(django_capture_on_commit_callbacks, category=category)

    assert (job.status, job.total, job.done, job.valid, job.invalid, job.skipped) == ("done", 3, 3, 2, 1, 0)
    assert [status(c) for c in contacts] == ["valid", "invalid", "valid"]
    assert [(at - started).total_seconds() for _phone, at in api.checked] == [0, 2, 4]
    assert job.started_at == started and job.finished_at == started + timedelta(seconds=4)


def test_numbers_checked_within_the_recheck_window_are_skipped(
    api, enqueued, fake_clock, settings, django_capture_on_commit_callbacks
):
    settings.VERIFY_RECHECK_DAYS = 30
    category, (fresh, stale, never) = category_of("+33612345678", "+33612345679", "+33612345680")
    Contact.objects.filter(pk=fresh.pk).update(whatsapp_checked_at=fake_clock.now() - timedelta(days=29))
    Contact.objects.filter(pk=stale.pk).update(whatsapp_checked_at=fake_clock.now() - timedelta(days=31))
    make_contact(phone="+33612345681", categories=[category], opted_out_at=fake_clock.now())

    job = start_and_run(django_capture_on_commit_callbacks, category=category)

    assert job.total == 2
    assert sorted(phone for phone, _at in api.checked) == [stale.phone, never.phone]


def test_nothing_due_makes_a_finished_job_and_no_task(
    api, enqueued, fake_clock, django_capture_on_commit_callbacks
):
    contact = make_contact(whatsapp_checked_at=fake_clock.now(), whatsapp_status="valid")
    with django_capture_on_commit_callbacks(execute=True):
        job = verification_start(contacts=Contact.objects.filter(pk=contact.pk))
    assert (job.status, job.total) == ("done", 0)
    assert not enqueued.called


def test_a_rate_limit_waits_retry_after_or_the_minimum_then_carries_on(
    api, enqueued, fake_clock, settings, django_capture_on_commit_callbacks
):
    settings.VERIFY_GAP_SECONDS = 1.0
    settings.RATE_LIMIT_MIN_WAIT_SECONDS = 60
    category, contacts = category_of("+33612345678", "+33612345679")
    api.script = ["429:90", "429"]
    started = fake_clock.now()

    job = start_and_run(django_capture_on_commit_callbacks, category=category)

    assert (job.done, job.valid) == (2, 2)
    # 90 s (Retry-After), then 60 s (no Retry-After: the minimum), then the second number 1 s later.
    assert [at - started for _p, at in api.checked] == [timedelta(seconds=150), timedelta(seconds=151)]


def test_an_auth_error_stops_the_job_with_its_error(api, enqueued, django_capture_on_commit_callbacks):
    category, contacts = category_of("+33612345678", "+33612345679")
    api.script = ["401"]

    job = start_and_run(django_capture_on_commit_callbacks, category=category)

    assert job.status == VerificationStatus.FAILED and "401" in job.error
    assert job.done == 0 and api.checked == []
    assert {status(c) for c in contacts} == {"unknown"}


def test_a_transient_error_skips_the_number_and_a_rerun_takes_it(
    api, enqueued, fake_clock, django_capture_on_commit_callbacks
):
    category, (first, second) = category_of("+33612345678", "+33612345679")
    api.script = ["500"]

    job = start_and_run(django_capture_on_commit_callbacks, category=category)
    assert (job.done, job.skipped, status(first), status(second)) == (1, 1, "unknown", "valid")

    VerificationJob.objects.filter(pk=job.pk).update(status=VerificationStatus.RUNNING)  # as if redelivered
    again = verification_run(job_id=job.pk)
    assert (again.done, status(first)) == (2, "valid")
    assert [phone for phone, _at in api.checked] == [second.phone, first.phone]


def test_a_killed_run_loses_nothing_and_the_rerun_continues(
    api, enqueued, fake_clock, django_capture_on_commit_callbacks, monkeypatch
):
    category, contacts = category_of("+33612345678", "+33612345679", "+33612345680")
    with django_capture_on_commit_callbacks(execute=True):
        job = verification_start(category=category)
    from campaigns import verification

    real_record, recorded = verification._record, []

    def record_then_die(job, outcome):
        real_record(job, outcome)
        recorded.append(outcome)
        if len(recorded) == 2:
            raise SystemExit("worker killed")

    monkeypatch.setattr(verification, "_record", record_then_die)
    with pytest.raises(SystemExit):
        verification_run(job_id=job.pk)
    monkeypatch.setattr(verification, "_record", real_record)

    assert verification_run(job_id=job.pk) is None  # the dead run's lease still holds the job
    fake_clock.advance(verification.LEASE_SECONDS + 1)
    rerun = verification_run(job_id=job.pk)

    assert (rerun.status, rerun.done) == ("done", 3)
    assert [phone for phone, _at in api.checked] == [c.phone for c in contacts]  # none checked twice


def test_campaign_recipients_are_checked_once_each(api, enqueued, django_capture_on_commit_callbacks):
    first, second = make_category(), make_category()
    both = make_contact(phone="+33612345678", categories=[first, second])
    make_contact(phone="+33612340000", categories=[second])
    make_contact(phone="+33612345679")  # not a recipient
    campaign = make_campaign(categories=[first, second])

    job = start_and_run(django_capture_on_commit_callbacks, campaign=campaign)

    assert (job.total, job.valid, job.invalid) == (2, 1, 1)
    assert sorted(phone for phone, _at in api.checked) == ["+33612340000", both.phone]


def test_launch_preview_then_skips_and_counts_invalid_numbers(
    api, enqueued, django_capture_on_commit_callbacks
):
    category, _contacts = category_of("+33612345678", "+33612340000", "+33612345679")
    campaign = make_campaign(categories=[category])

    start_and_run(django_capture_on_commit_callbacks, campaign=campaign)
    preview = launch_preview(campaign=campaign)

    assert (preview.distinct_contacts, preview.invalid, preview.recipients) == (3, 1, 2)


def test_the_task_entry_point_runs_the_job(api, enqueued, django_capture_on_commit_callbacks):
    from campaigns.tasks import verification_job_run

    category, _contacts = category_of("+33612345678")
    with django_capture_on_commit_callbacks(execute=True):
        job = verification_start(category=category)
    verification_job_run(job.pk)
    assert VerificationJob.objects.get(pk=job.pk).valid == 1


# --- Admin actions ------------------------------------------------------------------------------


@pytest.fixture
def operator(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("operator", "op@example.com", None))
    return client


def run_action(client, model: str, action: str, objects, django_capture_on_commit_callbacks):
    data = {"action": action, "_selected_action": [o.pk for o in objects]}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse(f"admin:campaigns_{model}_changelist"), data, follow=True)
    return [str(m) for m in response.context["messages"]]


def test_admin_actions_start_jobs_for_contacts_categories_and_campaigns(
    operator, enqueued, django_capture_on_commit_callbacks
):
    category, contacts = category_of("+33612345678", "+33612345679")
    campaign = make_campaign(name="Printemps", categories=[category])
    capture = django_capture_on_commit_callbacks

    shown = run_action(operator, "contact", "verify_numbers", contacts[:1], capture)
    shown += run_action(operator, "category", "verify_numbers", [category], capture)
    shown += run_action(operator, "campaign", "verify_recipients", [campaign], capture)

    assert shown == [
        "1 chosen contact: 1 number will be checked in the background (see WhatsApp number checks).",
        f"Category “{category.name}”: 2 numbers will be checked in the background "
        "(see WhatsApp number checks).",
        "Recipients of campaign “Printemps”: 2 numbers will be checked in the background "
        "(see WhatsApp number checks).",
    ]
    assert enqueued.call_count == 3
    jobs = operator.get(reverse("admin:campaigns_verificationjob_changelist")).content.decode()
    assert "Recipients of campaign “Printemps”" in jobs
