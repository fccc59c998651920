"""Bulk verification against the real sandbox process: numbers ending 0000 are not on WhatsApp."""

import pytest

from campaigns.launch import launch_preview
from campaigns.models import Contact
from campaigns.verification import verification_run, verification_start
from tests.factories import make_campaign, make_category, make_contact
from tests.messaging.conftest import SANDBOX_TOKEN, start_sandbox

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture
def sandbox(settings):
    server = start_sandbox("--webhook-url", "", "--seed", "3")
    server.set_faults(error_500=0, rate_limit_429=0, slow=0, drop_after_read=0)
    settings.WASSENGER_API_URL = f"{server.url}/v1"
    settings.WASSENGER_API_TOKEN = SANDBOX_TOKEN
    yield server
    assert server.stop() == 0


def test_bulk_check_against_the_sandbox_marks_0000_numbers_invalid(
    sandbox, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.VERIFY_GAP_SECONDS = 0
    monkeypatch.setattr("campaigns.verification.async_task", lambda *args, **kwargs: None)
    category = make_category()
    phones = ["+33612345678", "+33612340000", "+33698760000", "+33698761234"]
    for phone in phones:
        make_contact(phone=phone, categories=[category])
    campaign = make_campaign(categories=[category])

    with django_capture_on_commit_callbacks(execute=True):
        job = verification_start(campaign=campaign)
    job = verification_run(job_id=job.pk)

    assert (job.status, job.done, job.valid, job.invalid) == ("done", 4, 2, 2)
    statuses = dict(Contact.objects.values_list("phone", "whatsapp_status"))
    assert statuses == dict(zip(phones, ["valid", "invalid", "invalid", "valid"], strict=True))
    assert launch_preview(campaign=campaign).invalid == 2
