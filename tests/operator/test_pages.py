"""The operator pages through the test client: login, figures on a seeded database, empty state."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from campaigns.models import CampaignStatus
from messaging.models import DeviceDay, Message, MessageStatus
from monitoring.health import heartbeat_write
from tests.factories import (
    make_campaign,
    make_category,
    make_contact,
    make_device,
    make_message,
    make_sending_campaign,
    queue_message_1,
)

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 29, 9, 0, tzinfo=UTC)  # the fake clock's start


def _pages(campaign_id: int) -> list[str]:
    names = ["dashboard", "dashboard-live", "campaign-list", "contact-list"]
    per_campaign = ["campaign-detail", "campaign-live", "campaign-csv", "campaign-launch"]
    moves = [reverse("campaign-move", args=[campaign_id, move]) for move in ("pause", "resume", "cancel")]
    return [reverse(n) for n in names] + [reverse(n, args=[campaign_id]) for n in per_campaign] + moves


def test_every_page_and_live_fragment_sends_an_anonymous_visitor_to_the_login_page(client):
    campaign = make_campaign()
    for url in _pages(campaign.pk):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"] == f"{reverse('login')}?next={url}", url


def test_logging_in_on_the_login_page_leads_to_the_dashboard(client, django_user_model):
    django_user_model.objects.create_user("lou", password="a-long-test-password")
    response = client.post(reverse("login"), {"username": "lou", "password": "a-long-test-password"})
    assert response.status_code == 302 and response["Location"] == reverse("dashboard")
    assert "Dashboard" in client.get(reverse("dashboard")).content.decode()


def test_a_fresh_install_says_what_to_do_first(viewer):
    # Migrations create the default device; nothing else exists.
    page = viewer.get(reverse("dashboard")).content.decode()
    assert "Getting started" in page
    assert '<li class="done" id="step-device">' in page
    for step in ("category", "contacts", "campaign", "launch"):
        assert f'<li class="todo" id="step-{step}">' in page
    assert reverse("admin:campaigns_contact_import") in page
    assert "No campaign is sending" in page
    assert "No campaign yet" in viewer.get(reverse("campaign-list")).content.decode()
    assert "No contact yet" in viewer.get(reverse("contact-list")).content.decode()


def test_the_getting_started_steps_disappear_once_a_campaign_was_launched(viewer):
    make_sending_campaign(device=make_device()).categories.set([make_category()])
    make_contact()
    assert "Getting started" not in viewer.get(reverse("dashboard")).content.decode()


def test_dashboard_gauges_are_coloured_by_the_days_alert_level(viewer, fake_clock):
    quiet, busy = make_device(label="Quiet"), make_device(label="Busy")
    DeviceDay.objects.create(device=busy, day=NOW.date(), message_1_count=800, message_2_count=20)
    DeviceDay.objects.create(device=quiet, day=NOW.date() - timedelta(days=1), message_1_count=990)
    board = viewer.get(reverse("dashboard")).context["board"]
    levels = {gauge.figures.device: (gauge.figures.sends, gauge.figures.level) for gauge in board.gauges}
    assert levels == {"Busy": (820, "attention"), "Quiet": (0, "ok"), "Default": (0, "ok")}
    page = viewer.get(reverse("dashboard-live")).content.decode()
    assert f'id="gauge-{busy.pk}" data-level="attention" data-sends="820"' in page
    assert 'stroke-dasharray="82.0 100"' in page


def test_dashboard_chart_counts_sends_per_utc_hour_over_the_last_24_hours(viewer, fake_clock):
    campaign = make_campaign()
    for minutes_ago in (5, 20, 59, 61, 60 * 23 + 30, 60 * 30):  # the last one is out of range
        sent = NOW - timedelta(minutes=minutes_ago)
        make_message(campaign=campaign, status=MessageStatus.SENT, sent_at=sent)
    make_message(campaign=campaign, status=MessageStatus.FAILED, failed_at=NOW)  # not a send
    hours = viewer.get(reverse("dashboard")).context["board"].hours
    assert len(hours) == 24 and hours[-1].start == NOW and hours[0].start == NOW - timedelta(hours=23)
    counts = {bar.start.hour: bar.sends for bar in hours if bar.sends}
    assert counts == {8: 3, 7: 1}  # 08:55, 08:40, 08:01 | 07:59; 09:00 itself is the open hour
    assert [bar.height for bar in hours if bar.sends] == [33.3, 100.0]


def test_dashboard_shows_each_campaign_in_progress_with_counts_and_its_estimated_finish(viewer, fake_clock):
    device = make_device(gap_seconds=60, batch_size=1000, batch_pause_seconds=0)
    first, second = make_sending_campaign(device=device), make_sending_campaign(device=device)
    queue_message_1(campaign=first, contacts=[make_contact() for _ in range(10)])
    queue_message_1(campaign=second, contacts=[make_contact() for _ in range(5)])
    Message.objects.filter(campaign=first, contact__in=first.messages.values("contact")[:4]).update(
        status=MessageStatus.SENT, sent_at=NOW
    )
    failed = Message.objects.filter(campaign=first, status=MessageStatus.PENDING).first()
    Message.objects.filter(pk=failed.pk).update(
        status=MessageStatus.FAILED, failed_at=NOW, last_error="invalid"
    )
    make_campaign(device=device, name="Still a draft")

    progress = {p.campaign.name: p for p in viewer.get(reverse("dashboard")).context["board"].campaigns}

    assert set(progress) == {first.name, second.name}
    counts = progress[first.name].counts
    assert (counts.recipients, counts.sent, counts.failed, counts.open, counts.progress) == (
        10,
        4,
        1,
        5,
        50.0,
    )
    # One send a minute, Message 1s in campaign order: the first campaign's 5 waiting
    # messages end 4 minutes from now, the second's 5 more after them.
    assert progress[first.name].estimated_finish == NOW + timedelta(minutes=4)
    assert progress[second.name].estimated_finish == NOW + timedelta(minutes=9)
    page = viewer.get(reverse("dashboard-live")).content.decode()
    assert f'id="progress-{first.pk}" data-progress="50.0"' in page
    assert 'title="2026-03-29 09:04:00 UTC">2026-03-29 09:04<' in page
    assert 'title="2026-03-29 09:09:00 UTC">2026-03-29 09:09<' in page


def test_a_paused_campaign_has_no_finish_and_does_not_delay_the_others(viewer, fake_clock):
    device = make_device(gap_seconds=60, batch_size=1000, batch_pause_seconds=0)
    paused, sending = make_sending_campaign(device=device), make_sending_campaign(device=device)
    queue_message_1(campaign=paused, contacts=[make_contact() for _ in range(50)])
    queue_message_1(campaign=sending, contacts=[make_contact() for _ in range(2)])
    paused.transition_to(CampaignStatus.PAUSED)
    paused.save()
    progress = {p.campaign.pk: p for p in viewer.get(reverse("dashboard")).context["board"].campaigns}
    assert (progress[paused.pk].estimated_finish, progress[paused.pk].note) == (None, "paused")
    assert progress[sending.pk].estimated_finish == NOW + timedelta(minutes=1)


@pytest.mark.usefixtures("other_workers_alive")
def test_dashboard_says_whether_the_workers_are_running(viewer, fake_clock):
    assert "Down: nothing is being sent" in viewer.get(reverse("dashboard-live")).content.decode()
    heartbeat_write()
    assert "Running" in viewer.get(reverse("dashboard-live")).content.decode()


@pytest.mark.usefixtures("other_workers_alive")
def test_dashboard_queries_do_not_grow_with_campaigns_or_contacts(viewer, fake_clock):
    devices = [make_device(), make_device()]
    heartbeat_write()

    def seed(n: int) -> None:
        for index in range(n):
            campaign = make_sending_campaign(device=devices[index % 2])
            queue_message_1(campaign=campaign, contacts=[make_contact() for _ in range(3)])

    seed(1)
    with CaptureQueriesContext(connection) as one:
        viewer.get(reverse("dashboard-live"))
    seed(8)
    with CaptureQueriesContext(connection) as nine:
        viewer.get(reverse("dashboard-live"))
    assert len(nine) == len(one), [q["sql"][:100] for q in nine.captured_queries]


def test_campaign_list_shows_counts_and_filters_by_status(viewer):
    sending = make_sending_campaign(device=make_device(), name="Spring")
    queue_message_1(campaign=sending, contacts=[make_contact() for _ in range(3)])
    make_campaign(name="Draft one")
    rows = dict((c.name, counts) for c, counts in viewer.get(reverse("campaign-list")).context["rows"])
    assert rows["Spring"].recipients == 3 and rows["Draft one"].recipients == 0
    filtered = viewer.get(reverse("campaign-list"), {"status": "sending"}).context["rows"]
    assert [campaign.name for campaign, _ in filtered] == ["Spring"]


def test_contact_list_searches_and_counts(viewer):
    category = make_category("Salon")
    make_contact(first_name="Zoé", name="Martin", categories=[category])
    make_contact(first_name="Paul", opted_out_at=NOW)
    response = viewer.get(reverse("contact-list"), {"q": "martin"})
    assert [c.first_name for c in response.context["page"]] == ["Zoé"]
    assert response.context["totals"] == {"total": 2, "opted_out": 1, "invalid": 0}
    assert "Salon (1)" in response.content.decode()


@pytest.mark.parametrize("given", ["²", "١", "99999999999999999999", "abc", ""])
def test_a_category_filter_that_is_not_an_id_lists_every_contact(viewer, given):
    make_contact(first_name="Zoé", categories=[make_category("Salon")])
    response = viewer.get(reverse("contact-list"), {"category": given})
    assert response.status_code == 200
    assert [c.first_name for c in response.context["page"]] == ([] if given.startswith("9") else ["Zoé"])
