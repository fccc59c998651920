"""A campaign over several numbers, through the engine: launch split, sends, a ban mid-way,
its hand-over, replies to any of the numbers and Message 2 from the number that wrote first.

Wassenger is faked at the HTTP boundary (tests/fake_wassenger.py), inbound replies are posted
to the webhook endpoint in Wassenger's format, time is the test clock.
"""

from collections import Counter

import pytest
import responses

from campaigns.launch import campaign_launch, launch_preview
from campaigns.models import CampaignStatus
from messaging.devices import device_status_apply
from messaging.models import Device, DeviceDay, Message, MessageKind, MessageStatus
from messaging.sending import sender_run
from tests import fake_wassenger
from tests.factories import make_campaign, make_category, make_contact, make_device
from tests.webhooks.conftest import inline_tasks, post, reply_event, wakeups  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db
CONTACTS = 30


@pytest.fixture
def api():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield fake_wassenger.install(mock)


def three_numbers(**banned_fields) -> list[Device]:
    fast = {"gap_seconds": 0, "batch_pause_seconds": 0, "batch_size": 1000, "daily_limit": 1000}
    return [
        make_device(label="A", phone="+33755500001", **fast),
        make_device(label="B", phone="+33755500002", **fast),
        # C sends one batch of 4, then pauses: it is banned during that pause.
        make_device(label="C", phone="+33755500003", **{**fast, "batch_size": 4, "batch_pause_seconds": 600}),
    ]


def campaign_to_everyone(devices):
    category = make_category()
    for _ in range(CONTACTS):
        make_contact(categories=[category])
    return make_campaign(devices=devices, categories=[category], message_2_text="Merci {{ first_name }} !")


def reply_to(phone: str, *, number: str) -> dict:
    """The contact writes to `number`, one of our devices."""
    event = reply_event(phone, "Oui, dites-m'en plus")
    data = event["data"]
    data["to"], data["toNumber"] = f"{number[1:]}@c.us", number
    event["device"] = {**event["device"], "phone": number}
    return event


def test_a_launch_shares_the_recipients_by_what_each_number_can_still_send(fake_clock):
    a, b, c = (make_device(gap_seconds=60, batch_size=1000, daily_limit=1000) for _ in range(3))
    DeviceDay.objects.create(device=a, day=fake_clock.now().date(), message_1_count=895)  # 5 left today
    preview = launch_preview(campaign=campaign_to_everyone([a, b, c]))
    shares = [pace.recipients for pace in preview.pace.devices]
    assert sum(shares) == CONTACTS and preview.pace.remaining_today == 5 + 900 + 900
    assert shares[0] == 5 and abs(shares[1] - shares[2]) <= 1
    finishes = [pace.estimated_finish for pace in preview.pace.devices]
    assert preview.pace.estimated_finish == max(finishes)


def test_a_halted_number_is_given_nothing_at_launch_while_others_can_send(fake_clock, wakeups):  # noqa: F811
    a, b, c = three_numbers()
    Device.objects.filter(pk=c.pk).update(halted_at=fake_clock.now(), halted_reason="session offline")
    campaign = campaign_to_everyone([a, b, c])
    campaign_launch(campaign=campaign)
    per_device = Counter(Message.objects.filter(campaign=campaign).values_list("device_id", flat=True))
    assert set(per_device) == {a.pk, b.pk} and sum(per_device.values()) == CONTACTS


def test_three_numbers_one_banned_mid_way_reach_every_contact_once_message_2_from_the_right_number(
    fake_clock,
    api,
    post,  # noqa: F811
    wakeups,  # noqa: F811
):
    a, b, c = three_numbers()
    campaign = campaign_to_everyone([a, b, c])
    assert campaign_launch(campaign=campaign).campaign.status == CampaignStatus.SENDING
    assert set(Message.objects.filter(campaign=campaign).values_list("device_id", flat=True)) == {
        a.pk,
        b.pk,
        c.pk,
    }

    sender_run(device_id=c.pk)  # one batch of 4, then its pause
    sent_by_c = set(
        Message.objects.filter(campaign=campaign, device=c, status=MessageStatus.SENT).values_list(
            "contact_id", flat=True
        )
    )
    assert len(sent_by_c) == 4
    device_status_apply(device_id=c.pk, status="banned")  # what the 2-minute check reads at Wassenger
    assert Device.objects.get(pk=c.pk).halted_at is not None
    assert not Message.objects.filter(device=c, status=MessageStatus.PENDING).exists()  # handed over
    for device in (a, b, c):
        sender_run(device_id=device.pk)

    # Every contact got exactly one Message 1, and C's after the ban went out from A or B.
    assert len(api.accepted) == CONTACTS and len(set(api.phones())) == CONTACTS
    message_1s = Message.objects.filter(campaign=campaign, kind=MessageKind.MESSAGE_1)
    assert set(message_1s.values_list("status", flat=True)) == {MessageStatus.SENT}
    assert set(message_1s.filter(device=c).values_list("contact_id", flat=True)) == sent_by_c

    # Each contact answers another number of the campaign than the one that wrote: the reply
    # still finds its Message 1, and Message 2 is queued on the number that sent Message 1.
    numbers = {a.pk: b.phone, b.pk: c.phone, c.pk: a.phone}
    for message in message_1s.select_related("contact"):
        post(reply_to(message.contact.phone, number=numbers[message.device_id]))
    follow_ups = Message.objects.filter(campaign=campaign, kind=MessageKind.MESSAGE_2)
    assert follow_ups.count() == CONTACTS
    first_device = dict(message_1s.values_list("contact_id", "device_id"))
    assert all(m.device_id == first_device[m.contact_id] for m in follow_ups)

    before = len(api.accepted)
    for device in (a, b, c):
        sender_run(device_id=device.pk)
    message_2_phones = [record.phone for record in api.accepted[before:]]
    # A and B send their contacts' Message 2; C's contacts wait on C, banned, rather than
    # hear from a number they never wrote to.
    assert len(message_2_phones) == CONTACTS - len(sent_by_c) == len(set(message_2_phones))
    assert set(follow_ups.filter(device=c).values_list("status", flat=True)) == {MessageStatus.PENDING}
    daily = dict(
        DeviceDay.objects.filter(day=fake_clock.now().date()).values_list("device_id", "message_1_count")
    )
    assert daily == dict(Counter(message_1s.values_list("device_id", flat=True)))


@pytest.mark.parametrize("page", ["campaign-launch", "admin:campaigns_campaign_launch"])
def test_the_launch_pages_show_each_numbers_share_and_finish(fake_clock, client, django_user_model, page):
    from django.urls import reverse

    a, b = (make_device(label=label, gap_seconds=60, batch_size=1000) for label in ("Nord", "Sud"))
    campaign = campaign_to_everyone([a, b])
    client.force_login(django_user_model.objects.create_superuser("op", "op@example.com", None))
    html = client.get(reverse(page, args=[campaign.pk])).content.decode()
    split = html[html.index('id="launch-split"') :].split("</table>")[0]
    assert "Nord" in split and "Sud" in split and split.count("<td>15</td>") == 2
    assert split.count("UTC") == 2  # each number's estimated finish


def test_the_quota_is_that_of_all_the_numbers_together(fake_clock, wakeups):  # noqa: F811
    from campaigns.refusals import QuotaExceeded

    a, b = (make_device(daily_limit=10) for _ in range(2))  # 9 Message 1 a day each
    campaign = campaign_to_everyone([a, b])
    with pytest.raises(QuotaExceeded, match="18 Message 1 can still be sent .* on its 2 devices") as refused:
        campaign_launch(campaign=campaign)
    assert (refused.value.remaining_today, refused.value.days_needed) == (18, 2)
    assert campaign_launch(campaign=campaign, allow_multi_day=True).messages_created == CONTACTS
