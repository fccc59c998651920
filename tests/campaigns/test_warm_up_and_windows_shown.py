"""What the operator reads of warm-up and send windows: launch page, quota refusal, dashboard
(issue 21). Through Django's test client on real PostgreSQL, with the test clock."""

from datetime import timedelta

import pytest
from django.urls import reverse

from campaigns.figures import campaigns_in_progress
from messaging.models import DeviceDay
from tests.factories import (
    make_campaign,
    make_category,
    make_contact,
    make_device,
    make_sending_campaign,
    queue_message_1,
)

pytestmark = pytest.mark.django_db

WARMUP = "0-3:50,4-7:100,8-14:250,15-29:500"


@pytest.fixture
def operator(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("operator", "op@example.com", None))
    return client


@pytest.fixture
def warm_up(settings):
    settings.DEVICE_WARMUP, settings.MESSAGE_2_RESERVE_SHARE = WARMUP, 0.1


def audience(size: int):
    category = make_category()
    for _ in range(size):
        make_contact(categories=[category])
    return category


def launch_page(operator, campaign):
    return operator.get(reverse("admin:campaigns_campaign_launch", args=[campaign.pk]))


def test_a_new_number_s_launch_page_gives_its_warm_up_quota_and_the_plan_day_by_day(
    operator, fake_clock, warm_up
):
    device = make_device(send_window="always")  # new today: day 0 of its warm-up
    campaign = make_campaign(device=device, categories=[audience(100)])
    page = launch_page(operator, campaign)
    html = page.content.decode()
    assert ">45 (" in html  # 50 today, less the follow-up reserve
    assert "its warm-up allows 50 sends today, of its own 1000" in html
    plan = page.context["day_plan"]
    assert [sends for _, sends, _ in plan] == [45, 45, 10]
    assert all(warming for _, _, warming in plan)
    assert "Sun 29 Mar: 45*, Mon 30 Mar: 45*, Tue 31 Mar: 10*" in html
    assert "only 45 Message 1 can still be sent" in html  # the quota refusal names the warm-up too


def test_an_old_number_has_its_own_limit_and_no_warm_up_note(operator, fake_clock, warm_up):
    device = make_device(send_window="always")
    device.number_since = fake_clock.now().date() - timedelta(days=60)
    device.save()
    page = launch_page(operator, make_campaign(device=device, categories=[audience(3)]))
    assert ">900 (" in page.content.decode()
    assert page.context["warm_up_notes"] == [] and page.context["day_plan"] == []


def test_the_launch_finish_waits_for_the_send_window(operator, fake_clock):
    # 09:00 UTC on 29 March is 11:00 in Paris; at 19:59 the window closes a minute later.
    fake_clock.current = fake_clock.current.replace(hour=17, minute=59)
    device = make_device(send_window="mon-sun 09:00-20:00", time_zone="Europe/Paris")
    page = launch_page(operator, make_campaign(device=device, categories=[audience(5)]))
    # Three sends fit before 20:00 Paris (18:00 UTC); the other two go at 09:00 the next morning.
    assert "2026-03-30 07:00 UTC" in page.content.decode()


def test_the_dashboard_gauge_of_a_young_number_uses_its_warm_up_limit(operator, fake_clock, warm_up):
    device = make_device(label="Young", send_window="always")
    DeviceDay.objects.create(device=device, day=fake_clock.now().date(), message_1_count=40)
    board = operator.get(reverse("dashboard")).context["board"]
    gauge = next(g for g in board.gauges if g.figures.device == "Young")
    assert (gauge.figures.limit, gauge.figures.level, gauge.figures.warming_up) == (50, "attention", True)
    page = operator.get(reverse("dashboard-live")).content.decode()
    assert "Warm-up: a young number, 50 sends today (its own limit: 1000)." in page


def test_the_dashboard_says_when_a_device_is_outside_its_window(operator, fake_clock):
    fake_clock.current = fake_clock.current.replace(hour=22)  # midnight in Paris
    make_device(label="Night", send_window="mon-sun 09:00-20:00", time_zone="Europe/Paris")
    page = operator.get(reverse("dashboard-live")).content.decode()
    assert "Outside its send window: Message 1 waits for the next opening." in page


def test_a_campaign_on_a_young_number_says_its_finish_is_slowed_by_warm_up(operator, fake_clock, warm_up):
    device = make_device(send_window="always")
    campaign = make_sending_campaign(device=device)
    queue_message_1(campaign=campaign, contacts=[make_contact() for _ in range(60)])
    (progress,) = campaigns_in_progress(now=fake_clock.now())
    # 45 Message 1 today, 15 tomorrow from 00:00 UTC: 5 end the batch begun today (00:01:40),
    # then the 300 s pause, then 10 more 25 s apart.
    tomorrow = fake_clock.now().replace(hour=0) + timedelta(days=1)
    assert progress.estimated_finish == tomorrow + timedelta(seconds=100 + 300 + 9 * 25)
    assert progress.note == "warm_up"
    page = operator.get(reverse("dashboard-live")).content.decode()
    assert "(young number: warm-up)" in page
