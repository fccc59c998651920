"""message:out:expired and message:out:removed: Wassenger gave a queued message up unsent."""

import pytest

from messaging.models import DeviceDay, MessageStatus
from tests.webhooks.conftest import DEVICE, sent_message_1

pytestmark = pytest.mark.django_db


def expired_event(message, event: str) -> list:
    """Format B, as Wassenger's delivery log names these events (SPEC delivery-log enum)."""
    data = {"id": message.wassenger_id, "phone": message.contact.phone, "status": event.rsplit(":", 1)[-1]}
    data["device"] = {"id": DEVICE["id"]}
    item = {"event": event, "date": "2026-01-01T10:00:00.000Z", "entity": "message"}
    return [{**item, "entityId": message.wassenger_id, "data": data}]


@pytest.mark.parametrize("event", ["message:out:expired", "message:out:removed"])
def test_a_message_wassenger_gave_up_fails_with_that_reason_and_gives_its_slot_back(post, event, fake_clock):
    message = sent_message_1()
    day = DeviceDay.objects.create(device=message.device, day=fake_clock.now().date(), message_1_count=1)
    post(expired_event(message, event))
    message.refresh_from_db()
    assert message.status == MessageStatus.FAILED
    assert event.rsplit(":", 1)[-1] in message.last_error
    day.refresh_from_db()
    assert day.message_1_count == 0


def test_a_late_expiry_of_a_delivered_message_changes_nothing(post, fake_clock):
    message = sent_message_1(status=MessageStatus.DELIVERED, delivered_at=fake_clock.now())
    day = DeviceDay.objects.create(device=message.device, day=fake_clock.now().date(), message_1_count=1)
    post(expired_event(message, "message:out:expired"))
    message.refresh_from_db()
    day.refresh_from_db()
    assert (message.status, day.message_1_count) == (MessageStatus.DELIVERED, 1)
