"""A campaign's operator page: funnel, failures, timeline, CSV export and the action buttons."""

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st

from campaigns.models import Campaign, CampaignStatus
from campaigns.views import csv_cell
from messaging.models import Message, MessageKind, MessageStatus
from tests.factories import make_campaign, make_category, make_contact, make_device, make_message

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 29, 9, 0, tzinfo=UTC)


def seeded_campaign() -> Campaign:
    """Six recipients at every stage of the funnel, one failed, one waiting."""
    campaign = make_campaign(name="Salon", device=make_device(gap_seconds=0, batch_pause_seconds=0))
    Campaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.SENDING, launched_at=NOW)
    sent = {"status": MessageStatus.SENT, "sent_at": NOW}
    stages = [
        {**sent},
        {**sent, "status": MessageStatus.DELIVERED, "delivered_at": NOW},
        {**sent, "status": MessageStatus.READ, "delivered_at": NOW, "read_at": NOW},
        {**sent, "status": MessageStatus.READ, "delivered_at": NOW, "read_at": NOW, "replied_at": NOW},
        {"status": MessageStatus.FAILED, "failed_at": NOW, "last_error": "number not on WhatsApp"},
        {},
    ]
    for index, fields in enumerate(stages):
        contact = make_contact(first_name=f"C{index}", phone=f"+3361234500{index}")
        make_message(campaign=campaign, contact=contact, **fields)
    replier = Message.objects.get(campaign=campaign, replied_at__isnull=False).contact
    make_message(campaign=campaign, contact=replier, kind=MessageKind.MESSAGE_2, status="sent", sent_at=NOW)
    campaign.refresh_from_db()
    return campaign


def test_campaign_page_shows_the_funnel_from_recipients_to_message_2(viewer, fake_clock):
    campaign = seeded_campaign()
    response = viewer.get(reverse("campaign-detail", args=[campaign.pk]))
    funnel = [(stage, count) for stage, count, _ in response.context["counts"].funnel]
    assert funnel == [
        ("recipients", 6),
        ("sent", 4),
        ("delivered", 3),
        ("read", 2),
        ("replied", 1),
        ("message_2_sent", 1),
    ]
    page = response.content.decode()
    assert 'id="funnel-delivered" data-count="3"' in page
    assert "number not on WhatsApp" in page and 'id="failures"' in page
    assert 'data-live-url="/campaigns/' in page  # a sending campaign refreshes itself


def test_the_live_fragment_follows_the_campaign_without_a_reload(viewer, fake_clock):
    campaign = seeded_campaign()
    url = reverse("campaign-live", args=[campaign.pk])
    assert 'data-progress="83.3"' in viewer.get(url).content.decode()  # 4 sent + 1 failed of 6
    Message.objects.filter(campaign=campaign, status=MessageStatus.PENDING).update(
        status=MessageStatus.SENT, sent_at=NOW
    )
    assert 'data-progress="100.0"' in viewer.get(url).content.decode()


def test_timeline_is_paginated_one_row_per_recipient_with_their_message_2(viewer, settings, fake_clock):
    settings.OPERATOR_PAGE_SIZE = 4
    campaign = seeded_campaign()
    first = viewer.get(reverse("campaign-detail", args=[campaign.pk])).context["timeline"]
    second = viewer.get(reverse("campaign-detail", args=[campaign.pk]), {"page": 2}).context["timeline"]
    rows = list(first) + list(second)
    assert first.paginator.count == 6 and len(first) == 4 and len(second) == 2
    assert [row.contact.first_name for row in rows] == [f"C{i}" for i in range(6)]
    assert [row.message_2_label for row in rows] == ["", "", "", "sent", "", ""]
    failed = viewer.get(reverse("campaign-detail", args=[campaign.pk]), {"status": "failed"})
    assert [row.contact.first_name for row in failed.context["timeline"]] == ["C4"]


def _csv(response) -> list[dict]:
    body = b"".join(response.streaming_content).decode("utf-8")
    assert body.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(body[1:])))


def test_csv_export_has_every_recipient_and_their_timeline(viewer, fake_clock):
    campaign = seeded_campaign()
    response = viewer.get(reverse("campaign-csv", args=[campaign.pk]))
    assert response["Content-Type"] == "text/csv"
    assert f'filename="campaign-{campaign.pk}-timeline.csv"' in response["Content-Disposition"]
    rows = _csv(response)
    assert [row["phone"] for row in rows] == [f"+3361234500{i}" for i in range(6)]  # phones kept as they are
    replier = rows[3]
    assert replier["message_1_status"] == "read" and replier["replied_at"] == NOW.isoformat()
    assert (replier["message_2_status"], replier["message_2_sent_at"]) == ("sent", NOW.isoformat())
    assert (rows[4]["message_1_status"], rows[4]["last_error"]) == ("failed", "number not on WhatsApp")
    assert rows[5]["sent_at"] == "" and rows[5]["message_2_status"] == ""


def test_csv_export_defuses_formulas_written_into_contact_names(viewer):
    campaign = make_campaign()
    contact = make_contact(first_name='=HYPERLINK("http://evil.example","x")', name="@SUM(A1)")
    make_message(campaign=campaign, contact=contact)
    (row,) = _csv(viewer.get(reverse("campaign-csv", args=[campaign.pk])))
    assert row["first_name"] == '\'=HYPERLINK("http://evil.example","x")'
    assert row["name"] == "'@SUM(A1)"


@given(st.text())
def test_no_csv_cell_starts_like_a_formula_unless_it_is_a_plain_number(text):
    cell = csv_cell(text)
    assert cell in (text, "'" + text)
    if cell.startswith(("=", "+", "-", "@", "\t", "\r")):
        assert cell == text and float(text) == float(text)


# --- Buttons ------------------------------------------------------------------------------------


def test_a_viewer_sees_no_buttons_and_cannot_press_them(viewer):
    campaign = make_campaign()
    assert 'id="launch"' not in viewer.get(reverse("campaign-detail", args=[campaign.pk])).content.decode()
    assert viewer.post(reverse("campaign-launch", args=[campaign.pk])).status_code == 403
    assert viewer.post(reverse("campaign-move", args=[campaign.pk, "cancel"])).status_code == 403
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.DRAFT


def test_launch_shows_the_admins_preview_then_launches(operator, fake_clock):
    category = make_category()
    for _ in range(3):
        make_contact(categories=[category])
    campaign = make_campaign(categories=[category], device=make_device(gap_seconds=60, batch_pause_seconds=0))
    preview = operator.get(reverse("campaign-launch", args=[campaign.pk])).content.decode()
    assert 'id="launch-audience"' in preview and "Launch to 3 recipients" in preview
    response = operator.post(reverse("campaign-launch", args=[campaign.pk]), follow=True)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENDING and campaign.messages.count() == 3
    assert "launched: 3 Message 1 queued, estimated finish 2026-03-29 09:02 UTC" in response.content.decode()


def test_a_refused_launch_says_why_and_changes_nothing(operator):
    campaign = make_campaign(categories=[make_category()])
    response = operator.post(reverse("campaign-launch", args=[campaign.pk]), follow=True)
    assert "The campaign&#x27;s categories have no contacts." in response.content.decode()
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.DRAFT


def test_pause_resume_and_cancel_call_the_same_functions_as_the_admin(operator, fake_clock):
    campaign = seeded_campaign()
    page = operator.get(reverse("campaign-detail", args=[campaign.pk])).content.decode()
    assert 'id="pause"' in page and 'id="cancel"' in page
    operator.post(reverse("campaign-move", args=[campaign.pk, "pause"]))
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.PAUSED
    operator.post(reverse("campaign-move", args=[campaign.pk, "resume"]))
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.SENDING
    confirm = operator.get(reverse("campaign-move", args=[campaign.pk, "cancel"])).content.decode()
    assert "1 message not sent yet will be cancelled." in confirm
    done = operator.post(reverse("campaign-move", args=[campaign.pk, "cancel"]), follow=True).content.decode()
    assert "1 pending message cancelled." in done
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.CANCELLED
    refused = operator.post(reverse("campaign-move", args=[campaign.pk, "pause"]), follow=True)
    assert "it cannot be paused" in refused.content.decode()


def test_an_unknown_move_is_a_404(operator):
    assert operator.post(reverse("campaign-move", args=[make_campaign().pk, "explode"])).status_code == 404


def test_times_are_in_the_time_zone_setting_with_utc_on_hover(viewer, settings, fake_clock):
    settings.TIME_ZONE = "Europe/Paris"  # summer time began at 01:00 UTC that very day
    campaign = seeded_campaign()
    Campaign.objects.filter(pk=campaign.pk).update(launched_at=NOW + timedelta(minutes=7))
    page = viewer.get(reverse("campaign-detail", args=[campaign.pk])).content.decode()
    assert (
        '<time datetime="2026-03-29T09:07:00Z" title="2026-03-29 09:07:00 UTC">2026-03-29 11:07</time>'
        in page
    )
