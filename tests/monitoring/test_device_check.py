"""The 2-minute check reads each device's session, status and plan from GET /v1/devices."""

import pytest
import responses
from django.core import mail

from messaging.models import Device
from monitoring.checks import health_check_run
from monitoring.models import Incident
from tests.factories import make_device

pytestmark = pytest.mark.django_db
WASSENGER_ID = "61b37a069cba0c15d6c89757"


@pytest.fixture
def admins(settings):
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


@pytest.fixture
def device():
    return make_device(wassenger_id=WASSENGER_ID)


def check_with(settings, *, session="online", status="operative", plan="io-business") -> None:
    answer = [{"id": WASSENGER_ID, "phone": "+4412345678", "status": status, "plan": plan,
               "session": {"status": session}}]  # fmt: skip
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(f"{settings.WASSENGER_API_URL}/devices", json=answer)
        mock.get(f"{settings.WASSENGER_API_URL}/webhooks", json=[])
        health_check_run()


def test_an_unlinked_phone_found_by_the_check_halts_the_device_and_raises_one_incident(
    settings, fake_clock, device, admins, monkeypatch
):
    monkeypatch.setattr("messaging.dispatch.senders_wake", lambda *a, **k: None)
    check_with(settings, session="authorize")
    device.refresh_from_db()
    assert "phone unlinked: scan the QR code again" in device.halted_reason
    assert (device.session_status, device.plan, device.health_checked_at) == (
        "authorize", "io-business", fake_clock.now()
    )  # fmt: skip
    assert Incident.objects.filter(kind="number_unlinked", closed_at=None).count() == 1
    assert any("unlinked" in m.subject for m in mail.outbox)
    fake_clock.advance(120)
    check_with(settings, session="authorize")
    assert Incident.objects.filter(kind="number_unlinked").count() == 1
    fake_clock.advance(120)
    check_with(settings, session="online")
    device.refresh_from_db()
    assert device.halted_at is None
    assert not Incident.objects.filter(kind="number_unlinked", closed_at=None).exists()


def test_a_banned_number_is_halted_and_an_incident_says_so(settings, device, admins):
    check_with(settings, status="banned")
    device.refresh_from_db()
    assert device.halted_reason == "device banned: number banned"
    assert Incident.objects.filter(kind="number_banned", closed_at=None).exists()


def test_a_device_without_a_session_object_is_left_as_it_is(settings, device):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(f"{settings.WASSENGER_API_URL}/devices", json=[{"id": WASSENGER_ID, "status": "operative"}])
        mock.get(f"{settings.WASSENGER_API_URL}/webhooks", json=[])
        health_check_run()
    assert Device.objects.get(pk=device.pk).halted_at is None


def test_a_webhook_that_cannot_be_enabled_again_is_an_incident(settings, device, admins):
    settings.RELANCE_BASE_URL, settings.WASSENGER_WEBHOOK_SECRET = "https://relance.example", "s"
    url = "https://relance.example/webhooks/wassenger/?secret=s"
    hook = {"id": "a" * 24, "url": url, "status": "disabled", "events": ["number:session"]}
    api = settings.WASSENGER_API_URL
    with responses.RequestsMock() as mock:
        mock.get(
            f"{api}/devices",
            json=[{"id": WASSENGER_ID, "status": "operative", "session": {"status": "online"}}],
        )
        mock.get(f"{api}/webhooks", json=[hook])
        mock.post(
            f"{api}/webhooks/{hook['id']}/enable", status=403, json={"message": "plan", "errorCode": "x"}
        )
        health_check_run()
    assert Incident.objects.filter(kind="webhook_disabled", closed_at=None).exists()
    assert any("webhook is disabled" in m.subject for m in mail.outbox)
