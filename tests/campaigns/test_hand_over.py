"""A device halted for good hands its unsent Message 1s over; the operator can move them too
(admin action, API, the launch command's --device). The database keeps each message on one of
its campaign's devices."""

from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.urls import reverse
from rest_framework.test import APIClient

from campaigns.launch import campaign_launch
from campaigns.refusals import NotACampaignDevice
from messaging.devices import device_handover, device_session_apply
from messaging.models import Device, Message, MessageStatus
from tests.factories import make_campaign, make_category, make_contact, make_device

pytestmark = pytest.mark.django_db


def launched(devices, contacts: int = 9):
    category = make_category()
    for _ in range(contacts):
        make_contact(categories=[category])
    campaign = make_campaign(devices=devices, categories=[category])
    campaign_launch(campaign=campaign)
    return campaign


def on(device, campaign=None) -> int:
    messages = Message.objects.filter(device=device, status=MessageStatus.PENDING)
    return (messages.filter(campaign=campaign) if campaign else messages).count()


def test_an_unlinked_number_hands_over_only_once_the_setting_has_passed(fake_clock, settings):
    settings.DEVICE_HANDOVER_UNLINKED_HOURS = 2
    a, b = make_device(), make_device()
    campaign = launched([a, b])
    share = on(a)
    device_session_apply(device_id=a.pk, status="authorize")  # the phone was unlinked
    fake_clock.advance(3600)
    device_session_apply(device_id=a.pk, status="authorize")  # the 2-minute check, an hour on
    assert on(a) == share
    fake_clock.advance(3601)
    device_session_apply(device_id=a.pk, status="authorize")
    assert on(a) == 0 and on(b, campaign) == 9


def test_a_message_being_sent_or_in_doubt_never_moves(fake_clock):
    a, b = make_device(), make_device()
    campaign = launched([a, b])
    on_a = list(Message.objects.filter(campaign=campaign, device=a).order_by("pk"))
    sending, unknown = on_a[0], on_a[1]
    Message.objects.filter(pk=sending.pk).update(status=MessageStatus.SENDING)
    Message.objects.filter(pk=unknown.pk).update(status=MessageStatus.UNKNOWN)
    moved = device_handover(device_id=a.pk)
    assert moved == {b.pk: len(on_a) - 2} and on(b, campaign) == 9 - 2
    assert set(Message.objects.filter(campaign=campaign, device=a).values_list("pk", flat=True)) == {
        sending.pk,
        unknown.pk,
    }


def test_a_halted_target_gets_nothing_and_a_lone_device_keeps_its_messages(fake_clock):
    a, b, c = make_device(), make_device(), make_device()
    campaign = launched([a, b, c])
    Device.objects.filter(pk=b.pk).update(halted_at=fake_clock.now(), halted_reason="session offline")
    assert set(device_handover(device_id=a.pk)) == {c.pk}
    alone = launched([make_device()])
    assert device_handover(device_id=alone.device_ids()[0]) == {}
    assert on(c, campaign) == 9 - on(b, campaign)


def test_a_message_cannot_be_put_on_a_device_its_campaign_does_not_use(fake_clock):
    a, stranger = make_device(), make_device()
    campaign = launched([a], contacts=1)
    with pytest.raises(IntegrityError, match="message_campaign_device_fk"), transaction.atomic():
        Message.objects.filter(campaign=campaign).update(device=stranger)
        connection.check_constraints()
    with pytest.raises(IntegrityError), transaction.atomic():  # nor a used device taken away
        campaign.devices.remove(a)
        connection.check_constraints()


def test_the_api_moves_unsent_message_1s_by_hand_and_refuses_a_foreign_device(fake_clock, django_user_model):
    a, b = make_device(), make_device()
    campaign = launched([a, b])
    client = APIClient()
    client.force_authenticate(django_user_model.objects.create_superuser("api", "api@example.com", None))
    url, share = f"/api/campaigns/{campaign.pk}/hand-over/", on(a)
    response = client.post(url, {"from_devices": [a.pk], "to_devices": [b.pk]}, format="json")
    assert response.status_code == 200 and response.json()["moved"] == {str(b.pk): share}
    assert on(a) == 0 and on(b, campaign) == 9
    refused = client.post(url, {"from_devices": [make_device().pk]}, format="json")
    assert (refused.status_code, refused.json()["code"]) == (400, NotACampaignDevice.code)


def test_the_admin_action_moves_the_unsent_message_1s_of_halted_devices(
    fake_clock, client, django_user_model
):
    a, b = make_device(), make_device()
    campaign = launched([a, b])
    Device.objects.filter(pk=a.pk).update(halted_at=fake_clock.now() - timedelta(minutes=1))
    client.force_login(django_user_model.objects.create_superuser("op", "op@example.com", None))
    changelist = reverse("admin:campaigns_campaign_changelist")
    response = client.post(
        changelist, {"action": "hand_over_halted", "_selected_action": [campaign.pk]}, follow=True
    )
    assert on(a) == 0 and on(b, campaign) == 9
    assert any("moved" in str(message) for message in response.context["messages"])


def test_the_launch_command_takes_several_devices(fake_clock, manage):
    a, b = make_device(), make_device()
    category = make_category()
    for _ in range(4):
        make_contact(categories=[category])
    campaign = make_campaign(categories=[category])
    code, out, _ = manage("launch_campaign", campaign.pk, "--device", a.pk, "--device", b.pk)
    assert code == 0, out
    assert campaign.device_ids() == [a.pk, b.pk]
    assert on(a, campaign) + on(b, campaign) == 4 and on(a, campaign) == 2
    assert f"Device {a}: 2 recipients" in out
