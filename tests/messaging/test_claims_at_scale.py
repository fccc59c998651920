"""A claim's cost does not depend on how many messages of other campaigns wait on its device."""

import json

import pytest
from django.db import connection

from campaigns.models import Campaign, CampaignStatus
from messaging.claims import _CLAIM_SQL, _claim_params, device_snapshot, message_claim
from messaging.models import DeviceDay, Message, MessageKind
from tests.factories import make_campaign, make_contact, make_device, make_sending_campaign, queue_message_1

pytestmark = pytest.mark.django_db

KINDS = (MessageKind.MESSAGE_2, MessageKind.MESSAGE_1)


def _waiting_campaign(device, status: str, recipients: int) -> Campaign:
    """A campaign whose pending Message 1s come first in the claim's order (lower ids)."""
    campaign = make_campaign(device=device)
    Campaign.objects.filter(pk=campaign.pk).update(status=status)
    queue_message_1(campaign=campaign, contacts=[make_contact() for _ in range(recipients)])
    return campaign


def _claim(device, now):
    return message_claim(device=device_snapshot(device.pk, now), kinds=KINDS, now=now)


def _message_rows_read(device, now) -> int:
    """Rows of the message table the claim statement read (EXPLAIN ANALYZE, in the test's transaction)."""
    DeviceDay.objects.get_or_create(device=device, day=now.date())
    params, _ = _claim_params(device_snapshot(device.pk, now), KINDS, now, None)
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + _CLAIM_SQL, params)
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return _rows_of(plan[0]["Plan"], Message._meta.db_table)


def _rows_of(node: dict, table: str) -> int:
    here = 0
    if node.get("Relation Name") == table and "Scan" in node["Node Type"]:
        here = (node["Actual Rows"] + node.get("Rows Removed by Filter", 0)) * node["Actual Loops"]
    return here + sum(_rows_of(child, table) for child in node.get("Plans", []))


def test_a_claim_skips_the_paused_and_scheduled_campaigns_waiting_on_its_device(fake_clock):
    device = make_device()
    _waiting_campaign(device, CampaignStatus.PAUSED, 20)
    _waiting_campaign(device, CampaignStatus.SCHEDULED, 20)
    sending = make_sending_campaign(device=device)
    queue_message_1(campaign=sending, contacts=[make_contact()])

    claimed = _claim(device, fake_clock.now())

    assert claimed is not None and claimed.campaign_id == sending.pk
    assert _claim(device, fake_clock.now()) is None  # the paused and scheduled ones wait


def test_a_waiting_message_2_of_any_sending_campaign_goes_before_older_message_1s(fake_clock):
    device = make_device()
    older = make_sending_campaign(device=device)
    queue_message_1(campaign=older, contacts=[make_contact() for _ in range(3)])
    newer = make_sending_campaign(device=device)
    contact = make_contact()
    Message.objects.create(
        campaign=newer, contact=contact, device=device, kind=MessageKind.MESSAGE_2, content="Merci"
    )

    first, second = _claim(device, fake_clock.now()), _claim(device, fake_clock.now())

    assert (first.kind, first.campaign_id) == (MessageKind.MESSAGE_2, newer.pk)
    assert (second.kind, second.campaign_id) == (MessageKind.MESSAGE_1, older.pk)


def test_the_claim_reads_as_few_messages_with_a_large_paused_campaign_as_without(fake_clock):
    device = make_device()
    sending = make_sending_campaign(device=device)
    queue_message_1(campaign=sending, contacts=[make_contact()])
    alone = _message_rows_read(device, fake_clock.now())
    Message.objects.filter(campaign=sending).delete()
    _waiting_campaign(device, CampaignStatus.PAUSED, 300)
    queue_message_1(campaign=sending, contacts=[make_contact()])
    connection.cursor().execute("ANALYZE messaging_message")

    with_paused = _message_rows_read(device, fake_clock.now())

    assert with_paused <= alone + 2 < 10


def test_what_a_device_would_send_next_ignores_its_paused_campaigns(fake_clock):
    from datetime import timedelta

    from messaging.claims import devices_next_due

    device = make_device()
    _waiting_campaign(device, CampaignStatus.PAUSED, 5)  # due since 2000
    sending = make_sending_campaign(device=device)
    queue_message_1(campaign=sending, contacts=[make_contact()])
    due_at = fake_clock.now() - timedelta(minutes=3)
    Message.objects.filter(campaign=sending).update(next_attempt_at=due_at)
    idle = make_device()

    assert devices_next_due([device.pk, idle.pk], fake_clock.now()) == {device.pk: due_at, idle.pk: None}


def test_the_sender_loops_poll_reads_no_message_of_a_paused_campaign(fake_clock):
    from messaging.loop import _COUNT_FREE_SQL

    device = make_device()
    _waiting_campaign(device, CampaignStatus.PAUSED, 300)
    connection.cursor().execute("ANALYZE messaging_message")
    params = {"now": fake_clock.now(), "parked": [], "only": [device.pk]}

    with connection.cursor() as cursor:
        cursor.execute(_COUNT_FREE_SQL, params)
        free_with_work = cursor.fetchone()[0]
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + _COUNT_FREE_SQL, params)
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan

    assert free_with_work == 0  # nothing it may send: the campaign is paused
    assert _rows_of(plan[0]["Plan"], Message._meta.db_table) <= 2  # the old poll read all 300
