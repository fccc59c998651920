"""What contacts answered, where operators look: the campaign page and its CSV, the replies
page, the contact page, and the API behind them."""

import pytest
from django.urls import reverse

from campaigns.models import Campaign, CampaignStatus
from messaging.models import Message, MessageKind
from tests.factories import make_campaign, make_contact, make_device, make_inbound, make_message
from tests.operator.test_campaign_page import NOW, _csv, seeded_campaign

pytestmark = pytest.mark.django_db

LONG = "Bonjour, oui je suis intéressée.\\nPouvez-vous m'appeler demain matin ? " + "Merci " * 20


def _replier(campaign: Campaign) -> Message:
    return Message.objects.get(campaign=campaign, kind=MessageKind.MESSAGE_1, replied_at__isnull=False)


def test_the_timeline_shows_the_reply_text_first_lines_and_the_whole_on_expand(viewer, fake_clock):
    campaign = seeded_campaign()
    make_inbound(message_1=_replier(campaign), text=LONG, written_at=NOW)
    page = viewer.get(reverse("campaign-detail", args=[campaign.pk])).content.decode()
    assert '<details class="reply-text"><summary>Bonjour, oui je suis intéressée.' in page
    assert "Merci Merci" in page  # the whole text, inside <details>


def test_the_replied_filter_keeps_recipients_who_wrote_back_late_ones_included(viewer, fake_clock):
    campaign = seeded_campaign()
    make_inbound(message_1=_replier(campaign), text="Oui")
    late = Message.objects.filter(campaign=campaign, kind=MessageKind.MESSAGE_1, status="sent").first()
    make_inbound(message_1=late, text="Pardon, trop tard ?", outcome="late")
    response = viewer.get(reverse("campaign-detail", args=[campaign.pk]), {"status": "replied"})
    assert response.context["timeline"].paginator.count == 2
    page = response.content.decode()
    assert "Pardon, trop tard ?" in page and '<span class="badge late">' in page


def test_the_funnel_counts_late_replies_apart_from_replies(viewer, fake_clock):
    campaign = seeded_campaign()
    late = Message.objects.filter(campaign=campaign, kind=MessageKind.MESSAGE_1, status="sent").first()
    make_inbound(message_1=late, text="Trop tard", outcome="late")
    make_inbound(message_1=late, text="Toujours là ?", outcome="late")  # one contact, counted once
    response = viewer.get(reverse("campaign-detail", args=[campaign.pk]))
    counts = response.context["counts"]
    assert (counts.replied, counts.late_replies) == (1, 1)
    assert 'id="funnel-late" data-count="1"' in response.content.decode()


def test_the_csv_has_the_reply_text_and_time(viewer, fake_clock):
    campaign = seeded_campaign()
    make_inbound(message_1=_replier(campaign), text="=Oui, appelez-moi", written_at=NOW)
    rows = {row["phone"]: row for row in _csv(viewer.get(reverse("campaign-csv", args=[campaign.pk])))}
    replied = rows[_replier(campaign).contact.phone]
    assert (replied["reply_text"], replied["reply_written_at"]) == ("'=Oui, appelez-moi", NOW.isoformat())
    assert sum(1 for row in rows.values() if row["reply_text"]) == 1


# --- The replies page -----------------------------------------------------------------------------


def _two_campaigns_replies():
    first = make_campaign(name="Salon", device=make_device(label="Paris"))
    second = make_campaign(name="Relance", device=make_device(label="Lyon"))
    Campaign.objects.filter(pk__in=[first.pk, second.pk]).update(status=CampaignStatus.SENDING)
    m1 = make_message(campaign=first, contact=make_contact(first_name="Chloé"), status="sent", sent_at=NOW)
    m2 = make_message(campaign=second, status="sent", sent_at=NOW)
    make_inbound(message_1=m1, text="Oui, je viens au salon", written_at=NOW)
    make_inbound(message_1=m2, text="STOP", outcome="opt_out", written_at=NOW.replace(hour=10))
    make_inbound(text="Qui êtes-vous ?", outcome="unknown_sender", written_at=NOW.replace(hour=11))
    return first, second


def test_the_replies_page_lists_the_latest_first_and_needs_a_login(client, viewer, fake_clock):
    _two_campaigns_replies()
    page = viewer.get(reverse("reply-list"))
    texts = [reply.text for reply in page.context["page"]]
    assert texts == ["Qui êtes-vous ?", "STOP", "Oui, je viens au salon"]
    assert 'data-live-url="/replies/live/"' in page.content.decode()
    client.logout()
    assert client.get(reverse("reply-list")).status_code == 302


@pytest.mark.parametrize(
    "query, expected",
    [
        ({"outcome": "opt_out"}, ["STOP"]),
        ({"outcome": "unknown_sender"}, ["Qui êtes-vous ?"]),
        ({"q": "salon"}, ["Oui, je viens au salon"]),
        ("campaign", ["Oui, je viens au salon"]),
        ("device", ["STOP"]),
    ],
)
def test_the_replies_page_filters_by_campaign_device_outcome_and_text(viewer, fake_clock, query, expected):
    first, second = _two_campaigns_replies()
    query = (
        {"campaign": first.pk}
        if query == "campaign"
        else {"device": second.device_ids()[0]}
        if query == "device"
        else query
    )
    live = viewer.get(reverse("reply-list-live"), query)
    assert [reply.text for reply in live.context["page"]] == expected
    api = _api(viewer).get("/api/replies/", query)
    assert [reply["text"] for reply in api.json()["results"]] == expected


def _api(client):
    return client  # session auth: the API reads the operator's session


def test_the_replies_page_is_paginated(viewer, settings, fake_clock):
    settings.OPERATOR_PAGE_SIZE = 2
    _two_campaigns_replies()
    page = viewer.get(reverse("reply-list"), {"page": 2})
    assert [reply.text for reply in page.context["page"]] == ["Oui, je viens au salon"]


# --- The contact page -------------------------------------------------------------------------------


def test_the_contact_page_shows_the_whole_conversation_in_order(viewer, fake_clock):
    campaign = seeded_campaign()
    message_1 = _replier(campaign)
    contact = message_1.contact
    contact.fields = {"company": "ACME"}
    contact.save()
    make_inbound(message_1=message_1, text="Oui, dites-m'en plus", written_at=NOW.replace(minute=5))
    Message.objects.filter(contact=contact, kind=MessageKind.MESSAGE_2).update(sent_at=NOW.replace(minute=6))
    # A test send rendered for this contact went to the operator's phone: not their conversation.
    make_message(campaign=campaign, contact=contact, kind=MessageKind.TEST, phone="+33699887766")
    response = viewer.get(reverse("contact-detail", args=[contact.pk]))
    turns = [(t.message.kind if t.ours else "reply") for t in response.context["conversation"]]
    assert turns == ["message_1", "reply", "message_2"]
    page = response.content.decode()
    assert "Oui, dites-m&#x27;en plus" in page and "ACME" in page and campaign.name in page
    timeline = viewer.get(reverse("campaign-detail", args=[campaign.pk])).content.decode()
    assert reverse("contact-detail", args=[contact.pk]) in timeline  # linked from the campaign page
    listing = viewer.get(reverse("contact-list")).content.decode()
    assert reverse("contact-detail", args=[contact.pk]) in listing


def test_the_conversation_api_gives_the_same_turns(viewer, fake_clock):
    campaign = seeded_campaign()
    message_1 = _replier(campaign)
    make_inbound(message_1=message_1, text="Oui", written_at=NOW.replace(minute=5))
    Message.objects.filter(contact=message_1.contact, kind=MessageKind.MESSAGE_2).update(
        sent_at=NOW.replace(minute=6)
    )
    turns = viewer.get(f"/api/contacts/{message_1.contact_id}/conversation/").json()
    assert [turn["direction"] for turn in turns] == ["out", "in", "out"]
    assert turns[1]["inbound"]["text"] == "Oui" and turns[0]["message"]["id"] == message_1.pk
