"""Connecting a number without curl: `wassenger_connect`, the admin button, and the 2-minute
check keeping the webhook active, against the sandbox process."""

from io import StringIO
from urllib.parse import quote

import pytest
from django.core.management import call_command
from django.urls import reverse

from messaging.devices import webhook_url
from messaging.models import Device
from messaging.wassenger.sandbox.state import SANDBOX_DEVICE_ID
from monitoring.checks import health_check_run
from monitoring.models import Incident
from tests.factories import make_device
from tests.messaging.conftest import SANDBOX_TOKEN, start_sandbox, wait_for

pytestmark = pytest.mark.django_db
BASE = "http://127.0.0.1:9"  # nothing listens: every webhook delivery is refused


@pytest.fixture
def sandbox(settings):
    settings.RELANCE_BASE_URL, settings.WASSENGER_WEBHOOK_SECRET = BASE, "s3cret"
    url = f"{BASE}/webhooks/wassenger/?secret={quote('s3cret')}"
    server = start_sandbox("--webhook-url", url, "--webhook-retries", "0")
    settings.WASSENGER_API_URL, settings.WASSENGER_API_TOKEN = f"{server.url}/v1", SANDBOX_TOKEN
    yield server
    server.stop()


@pytest.fixture
def device():
    Device.objects.all().delete()
    return make_device(wassenger_id=SANDBOX_DEVICE_ID, is_default=True)


def hooks(sandbox) -> list[dict]:
    return sandbox.control("GET", "device")["webhooks"]


def connect(label: str) -> str:
    out = StringIO()
    call_command("wassenger_connect", "--device", label, stdout=out)
    return out.getvalue()


def test_connecting_twice_updates_the_one_webhook_with_the_events_of_the_plan(sandbox, device):
    sandbox.control("POST", "device", {"plan": "gateway"})
    out = connect(device.label)
    assert "Webhook updated (active)" in out and "plan: wa-gateway" in out
    assert "no Message 2, no STOP" in out
    sandbox.control("POST", "device", {"plan": "business"})
    connect(device.label)
    (hook,) = hooks(sandbox)
    assert hook["url"] == webhook_url()
    assert {"message:in:new", "message:out:ack", "number:session"} <= set(hook["events"])
    assert Device.objects.get(pk=device.pk).plan == "io-business"


def test_the_check_enables_again_a_webhook_wassenger_disabled(sandbox, device):
    sandbox.control("POST", "device", {"disable_after": 1, "session": "offline"})  # one refused delivery
    wait_for(lambda: hooks(sandbox)[0]["status"] == "disabled", timeout=10, interval=0.05)
    health_check_run()
    assert hooks(sandbox)[0]["status"] == "active"
    assert not Incident.objects.filter(kind="webhook_disabled", closed_at=None).exists()


def test_the_admin_button_connects_on_post_only(sandbox, device, admin_client):
    url = reverse("admin:messaging_device_connect", args=[device.pk])
    assert admin_client.get(url).status_code == 405
    page = admin_client.get(reverse("admin:messaging_device_change", args=[device.pk])).content.decode()
    assert 'id="device-connect"' in page
    response = admin_client.post(url, follow=True)
    assert "Webhook updated" in response.content.decode()
    assert len(hooks(sandbox)) == 1


def test_the_button_needs_the_device_change_permission(sandbox, device, client, django_user_model):
    user = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    client.force_login(user)
    response = client.post(reverse("admin:messaging_device_connect", args=[device.pk]))
    assert response.status_code in (302, 403)
    assert len(hooks(sandbox)) == 1 and "events" in hooks(sandbox)[0]
