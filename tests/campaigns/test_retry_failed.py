""" "Send the failed ones again", from the operator's side: the API, the admin, the operator
pages, and what it never does (send again a message Wassenger accepted, or to a contact
who is not on WhatsApp or opted out)."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from campaigns.lifecycle import campaign_retry_failed
from campaigns.models import Campaign, CampaignStatus, FailedRetry, WhatsAppStatus
from messaging.models import Message, MessageKind, MessageStatus
from tests.factories import make_contact, make_device, make_message, make_sending_campaign

pytestmark = pytest.mark.django_db


def _completed_campaign_with_failures(fake_clock):
    """One failure of each kind; only `lost` (an outage's, never accepted) may go again."""
    campaign = make_sending_campaign(device=make_device())
    now = fake_clock.now()
    failed = {"status": MessageStatus.FAILED, "failed_at": now, "attempts": 3}
    rows = {
        "lost": make_message(campaign=campaign, last_error="WassengerUnavailable", **failed),
        "not_on_whatsapp": make_message(
            campaign=campaign, contact=make_contact(whatsapp_status=WhatsAppStatus.INVALID), **failed
        ),
        "opted_out": make_message(campaign=campaign, contact=make_contact(opted_out_at=now), **failed),
        "accepted_then_failed": make_message(campaign=campaign, wassenger_id="abc", sent_at=now, **failed),
        "cancelled": make_message(campaign=campaign, status=MessageStatus.CANCELLED),
        "sent": make_message(campaign=campaign, status=MessageStatus.SENT, sent_at=now),
    }
    Campaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.COMPLETED, finished_at=now)
    campaign.refresh_from_db()
    return campaign, rows


def _statuses(rows) -> dict:
    return {name: Message.objects.get(pk=row.pk).status for name, row in rows.items()}


def test_the_api_sends_only_the_retriable_failures_again_and_reopens_the_campaign(fake_clock):
    from tests.api.conftest import _token_client

    staff = _token_client(is_staff=True, username="ops")
    campaign, rows = _completed_campaign_with_failures(fake_clock)

    response = staff.post(f"/api/campaigns/{campaign.pk}/retry-failed/")

    assert response.status_code == 200
    assert response.json()["messages_retried"] == 1
    assert response.json()["campaign"]["status"] == "sending"
    assert _statuses(rows) == {
        "lost": "pending",
        "not_on_whatsapp": "failed",
        "opted_out": "failed",
        "accepted_then_failed": "failed",
        "cancelled": "cancelled",
        "sent": "sent",
    }
    lost = Message.objects.get(pk=rows["lost"].pk)
    assert (lost.attempts, lost.last_error, lost.failed_at) == (0, "", None)
    audit = FailedRetry.objects.get()
    assert (audit.requested_by, audit.messages_retried, audit.requested_at) == (
        staff.user,
        1,
        fake_clock.now(),
    )


def test_each_click_retries_once_and_is_audited_even_when_there_is_nothing_left(fake_clock):
    campaign, rows = _completed_campaign_with_failures(fake_clock)
    operator = get_user_model().objects.create_user("camille")
    assert campaign_retry_failed(campaign=campaign, by=operator) == 1
    assert campaign_retry_failed(campaign=campaign, by=operator) == 0  # already back in the queue
    assert list(FailedRetry.objects.order_by("pk").values_list("messages_retried", flat=True)) == [1, 0]
    assert Message.objects.filter(campaign=campaign, kind=MessageKind.MESSAGE_1).count() == len(rows)


def test_a_draft_has_nothing_to_send_again_and_says_so(fake_clock):
    from campaigns.refusals import CampaignRefused
    from tests.factories import make_campaign

    with pytest.raises(CampaignRefused, match="cannot be sent again"):
        campaign_retry_failed(campaign=make_campaign())
    assert not FailedRetry.objects.exists()


@pytest.fixture
def operator(client, django_user_model):
    user = django_user_model.objects.create_superuser("ops", password="x")
    client.force_login(user)
    return user


def test_the_admin_confirms_with_the_count_then_retries_on_post_only(client, operator, fake_clock):
    campaign, rows = _completed_campaign_with_failures(fake_clock)
    change = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))
    assert b'id="retry"' in change.content

    url = reverse("admin:campaigns_campaign_retry", args=[campaign.pk])
    confirmation = client.get(url)
    assert "1 failed message will be sent again." in confirmation.content.decode()
    assert _statuses(rows)["lost"] == "failed"  # a GET changes nothing

    client.post(url)
    assert _statuses(rows)["lost"] == "pending"
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.SENDING
    assert FailedRetry.objects.get().requested_by == operator
    page = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    assert 'id="retry"' not in page  # nothing left to send again
    assert "by ops: 1 sent again" in page  # the audit, on the campaign's page


def test_the_operator_page_offers_it_in_french_and_english(client, operator, fake_clock):
    campaign, rows = _completed_campaign_with_failures(fake_clock)
    english = client.get(reverse("campaign-detail", args=[campaign.pk])).content.decode()
    assert "Send the 1 failed one again…" in english
    french = client.get(reverse("campaign-detail", args=[campaign.pk]), HTTP_ACCEPT_LANGUAGE="fr").content
    assert "Renvoyer le message en échec…" in french.decode()

    response = client.post(reverse("campaign-move", args=[campaign.pk, "retry"]))
    assert response.status_code == 302
    assert _statuses(rows)["lost"] == "pending"
