"""number:session pauses and resumes a device; the sweeper, the hourly job, the schedules, the admin."""

import pytest
from django.urls import reverse

from config.schedules import SCHEDULES
from messaging.models import Device
from tests.factories import make_device
from tests.webhooks.conftest import DEVICE, ack_event, later, reply_event, sent_message_1, session_event
from webhooks import ingest
from webhooks.models import EventStatus, WebhookEvent
from webhooks.processing import events_sweep
from webhooks.replies import reply_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def device():
    return make_device(wassenger_id=DEVICE["id"])


def test_session_offline_halts_the_device_and_online_resumes_it(
    post, fake_clock, device, inline_tasks, caplog
):
    post(session_event("offline"))
    device.refresh_from_db()
    assert device.halted_at == fake_clock.now()
    assert device.halted_reason.startswith("session offline: phone offline")
    assert "halted: WhatsApp session offline" in caplog.text
    fake_clock.advance(120)
    post(session_event("online"))
    device.refresh_from_db()
    assert (device.halted_at, device.halted_reason) == (None, "")
    assert inline_tasks.devices == [device.pk]


def test_session_online_does_not_lift_an_auth_halt(post, fake_clock, device, inline_tasks):
    Device.objects.filter(pk=device.pk).update(
        halted_at=fake_clock.now(), halted_reason="AuthError HTTP 401: bad"
    )
    post(session_event("offline"))
    post(session_event("online", at=later(fake_clock.now(), seconds=5)))
    device.refresh_from_db()
    assert device.halted_reason == "AuthError HTTP 401: bad"
    assert inline_tasks.devices == []


def test_an_older_session_event_arriving_late_is_ignored(post, fake_clock, device):
    offline_at = fake_clock.now()
    fake_clock.advance(60)
    post(session_event("online"))
    post(session_event("offline", at=offline_at))
    device.refresh_from_db()
    assert device.halted_at is None
    assert "newer session event" in WebhookEvent.objects.order_by("id").last().reason


def test_going_offline_twice_is_two_events(post, fake_clock, device):
    for status in ("offline", "online", "offline"):
        fake_clock.advance(60)
        post(session_event(status))
    assert WebhookEvent.objects.filter(status=EventStatus.PROCESSED).count() == 3
    device.refresh_from_db()
    assert device.halted_at is not None


def test_an_unknown_session_status_halts_until_online(post, fake_clock, device, inline_tasks):
    post(session_event("syncing"))
    device.refresh_from_db()
    assert device.halted_reason == "session syncing: WhatsApp session not online"
    fake_clock.advance(30)
    post(session_event("online"))
    device.refresh_from_db()
    assert device.halted_at is None


@pytest.mark.parametrize(
    ("status", "words"),
    [("authorize", "phone unlinked: scan the QR code again"), ("blocked", "number banned")],
)
def test_an_unlinked_or_banned_session_halts_with_what_the_operator_must_do(post, device, status, words):
    post(session_event(status))
    device.refresh_from_db()
    assert device.halted_at is not None and words in device.halted_reason
    assert device.session_status == status


def test_a_session_going_from_offline_to_unlinked_says_the_newer_reason(post, fake_clock, device):
    post(session_event("offline"))
    fake_clock.advance(30)
    post(session_event("authorize"))
    device.refresh_from_db()
    assert "scan the QR code again" in device.halted_reason


def test_a_session_state_never_rewords_an_operator_halt(post, fake_clock, device):
    Device.objects.filter(pk=device.pk).update(halted_at=fake_clock.now(), halted_reason="held by Ops")
    post(session_event("authorize"))
    device.refresh_from_db()
    assert device.halted_reason == "held by Ops"


def test_a_session_event_for_another_number_changes_nothing(post, device):
    make_device()
    post(session_event("offline", device_id="0" * 24))
    device.refresh_from_db()
    assert device.halted_at is None


# --- The sweeper -----------------------------------------------------------------------------


def test_the_sweeper_processes_events_stored_while_the_cluster_was_down(post, fake_clock, monkeypatch):
    monkeypatch.setattr(ingest, "async_task", lambda *args, **kwargs: None)  # the broker lost it
    message = sent_message_1()
    post(reply_event(message.contact.phone, "Oui"))
    post(ack_event(message, "read"))
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {EventStatus.RECEIVED}
    assert events_sweep() == {}  # too fresh: its own task may still be on its way
    fake_clock.advance(31)
    assert events_sweep() == {EventStatus.PROCESSED: 2}
    message.refresh_from_db()
    assert message.replied_at is not None and message.status == "read"
    assert events_sweep() == {}


def test_a_crashing_handler_is_retried_then_marked_failed(post, fake_clock, monkeypatch, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    monkeypatch.setattr("webhooks.replies.reply_record", _crash)
    message = sent_message_1()
    post(reply_event(message.contact.phone, "Oui"))
    event = WebhookEvent.objects.get()
    assert (event.status, event.attempts) == (EventStatus.RECEIVED, 1)
    assert event.reason == "will retry: RuntimeError: boom"
    fake_clock.advance(60)
    events_sweep()
    event.refresh_from_db()
    assert (event.status, event.attempts, event.reason) == (EventStatus.FAILED, 2, "RuntimeError: boom")


def _crash(**kwargs):
    raise RuntimeError("boom")


def test_the_sweeper_and_the_window_expiry_are_scheduled():
    functions = {spec.func: spec for spec in SCHEDULES}
    assert functions["webhooks.tasks.sweep"].minutes == 1
    assert functions["webhooks.tasks.expire_windows"].schedule_type == "H"
    assert functions["webhooks.tasks.sweep"].cluster is None  # the default cluster


# --- The admin ---------------------------------------------------------------------------------


@pytest.fixture
def operator(client, django_user_model):
    user = django_user_model.objects.create_superuser("operator", "op@example.com", "pw-for-tests-only")
    client.force_login(user)
    return client


def test_the_admin_lists_and_filters_events_read_only(operator, post):
    post({"hello": "world"})
    post(reply_event("+33699999999", "Oui"))
    changelist = reverse("admin:webhooks_webhookevent_changelist")
    assert operator.get(changelist).status_code == 200
    page = operator.get(changelist, {"status__exact": "rejected"})
    assert page.status_code == 200 and b"no event name" in page.content
    assert operator.get(changelist, {"event": "message:in:new"}).status_code == 200
    event = WebhookEvent.objects.get(status=EventStatus.REJECTED)
    detail = operator.get(reverse("admin:webhooks_webhookevent_change", args=[event.pk]))
    assert detail.status_code == 200 and b"&quot;hello&quot;" in detail.content
    assert b'name="status"' not in detail.content
    assert operator.get(reverse("admin:webhooks_webhookevent_add")).status_code == 403


def test_the_reprocess_action_replays_an_event_without_a_second_effect(operator, post, monkeypatch):
    monkeypatch.setattr("webhooks.replies.reply_record", _crash)
    message = sent_message_1()
    post(reply_event(message.contact.phone, "Oui"))
    monkeypatch.setattr("webhooks.replies.reply_record", reply_record)  # the bug is fixed
    event = WebhookEvent.objects.get()
    changelist = reverse("admin:webhooks_webhookevent_changelist")
    for _ in range(2):
        response = operator.post(
            changelist, {"action": "reprocess", "_selected_action": [event.pk]}, follow=True
        )
        assert b"Reprocessed: 1 processed." in response.content
    assert message.campaign.messages.filter(kind="message_2").count() == 1


def test_the_sandboxs_session_events_reach_the_demo_device(post):
    """The demo device holds the sandbox's number, so POST /sandbox/device halts it in the tour."""
    from io import StringIO

    from django.core.management import call_command

    from campaigns.demo import DEVICE_LABEL
    from messaging.wassenger.sandbox.state import SANDBOX_DEVICE_ID

    call_command("demo", stdout=StringIO())
    assert post(session_event("authorize", device_id=SANDBOX_DEVICE_ID)).status_code == 200
    demo = Device.objects.get(label=DEVICE_LABEL)
    assert demo.halted_at is not None and "unlinked" in demo.halted_reason
    assert Device.objects.get(is_default=True).halted_at is None
