"""Launching, pausing, resuming and cancelling from the admin, through Django's test client."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from campaigns.launch import campaign_launch
from campaigns.models import CampaignStatus, WhatsAppStatus
from messaging.models import DeviceDay, Message, MessageStatus
from tests.factories import make_campaign, make_category, make_contact, make_device

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client, django_user_model):
    user = django_user_model.objects.create_superuser("operator", "op@example.com", None)
    client.force_login(user)
    client.user = user
    return client


def url(view: str, campaign) -> str:
    return reverse(f"admin:campaigns_campaign_{view}", args=[campaign.pk])


def shown_messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def audience(size: int = 1, **fields):
    category = make_category()
    for _ in range(size):
        make_contact(categories=[category], **fields)
    return category


def test_the_launch_action_leads_to_a_confirmation_page_then_launches(operator, fake_clock):
    first, second = make_category(), make_category()
    make_contact(first_name="Léa", name="Martin", phone="+33612345678", categories=[first, second])
    make_contact(first_name="Noé", categories=[second])
    make_contact(categories=[first], opted_out_at=fake_clock.now())
    make_contact(categories=[first], whatsapp_status=WhatsAppStatus.INVALID)
    campaign = make_campaign(categories=[first, second], message_1_text="Bonjour {{ first_name }} !")

    chosen = operator.post(
        reverse("admin:campaigns_campaign_changelist"),
        {"action": "launch_selected", "_selected_action": [campaign.pk]},
    )
    assert chosen.status_code == 302 and chosen["Location"] == url("launch", campaign)

    page = operator.get(chosen["Location"])
    assert page.status_code == 200
    preview = page.context["preview"]
    assert (preview.recipients, preview.duplicates, preview.opted_out, preview.invalid) == (2, 1, 1, 1)
    html = page.content.decode()
    assert "Preview for Léa Martin (+33612345678)" in html
    assert "Bonjour Léa !" in html
    assert "Launch to 2 recipients" in html
    assert "2026-03-29 09:00 UTC" in html  # the estimated finish: the second send, 25 s after 09:00
    assert ">900 (" in html  # Message 1 still allowed today

    launched = operator.post(url("launch", campaign), follow=True)
    assert launched.redirect_chain == [(url("change", campaign), 302)]
    assert shown_messages(launched) == [
        f"Campaign “{campaign.name}” launched: 2 Message 1 queued, estimated finish 2026-03-29 09:00 UTC."
    ]
    campaign.refresh_from_db()
    assert (campaign.status, campaign.launched_by) == (CampaignStatus.SENDING, operator.user)
    assert Message.objects.filter(campaign=campaign).count() == 2


def test_a_quota_refusal_is_an_admin_message_and_accepting_several_days_launches(
    operator, fake_clock, settings
):
    settings.MESSAGE_2_RESERVE_SHARE = 0.1
    device = make_device(daily_limit=10)
    DeviceDay.objects.create(device=device, day=fake_clock.now().date(), message_1_count=4)
    campaign = make_campaign(device=device, categories=[audience(7)])

    page = operator.get(url("launch", campaign))
    assert "only 5 Message 1 can still be sent" in page.content.decode()
    assert 'name="allow_multi_day"' in page.content.decode()

    refused = operator.post(url("launch", campaign), follow=True)
    assert refused.redirect_chain == [(url("launch", campaign), 302)]
    assert "It needs 2 days and would finish around 2026-03-30 00:00 UTC" in shown_messages(refused)[0]
    assert not Message.objects.exists()

    operator.post(url("launch", campaign), {"allow_multi_day": "1"})
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENDING
    assert Message.objects.filter(campaign=campaign).count() == 7


def test_a_second_launch_says_already_launched_instead_of_failing(operator, fake_clock):
    campaign = make_campaign(categories=[audience()])
    operator.post(url("launch", campaign), follow=True)
    again = operator.post(url("launch", campaign), follow=True)
    assert again.status_code == 200
    assert "was already launched: it is sending." in shown_messages(again)[0]
    assert "Launch to" not in again.content.decode()  # the page offers no launch any more
    assert Message.objects.filter(campaign=campaign).count() == 1


def test_a_missing_variable_is_explained_and_blocks_the_launch(operator, fake_clock):
    campaign = make_campaign(
        categories=[audience(2, first_name="")], message_1_text="Bonjour {{ first_name }}"
    )
    page = operator.get(url("launch", campaign))
    html = page.content.decode()
    assert "none: set one in the campaign's fallbacks" in html
    assert "2 recipients have no {{ first_name }}" in html
    assert "Bonjour {{ first_name }}" in html  # the preview shows what is unresolved
    assert "Launch to" not in html
    refused = operator.post(url("launch", campaign), follow=True)
    assert "2 recipients have no {{ first_name }}" in shown_messages(refused)[0]


def test_the_campaign_page_offers_the_buttons_its_status_allows(operator, fake_clock):
    buttons = {
        CampaignStatus.DRAFT: {"launch", "cancel"},
        CampaignStatus.SENDING: {"pause", "cancel"},
        CampaignStatus.PAUSED: {"resume", "cancel"},
        CampaignStatus.COMPLETED: set(),
    }
    for status, expected in buttons.items():
        campaign = make_campaign(status=status)
        html = operator.get(url("change", campaign)).content.decode()
        shown = {
            view
            for view in ("launch", "pause", "resume", "cancel")
            if f'href="{url(view, campaign)}"' in html
        }
        assert shown == expected, status


def test_pause_resume_and_cancel_through_their_confirmation_pages(operator, fake_clock):
    campaign = make_campaign(categories=[audience(3)])
    campaign_launch(campaign=campaign)

    assert "a message being sent completes" in operator.get(url("pause", campaign)).content.decode()
    paused = operator.post(url("pause", campaign), follow=True)
    assert shown_messages(paused) == [f"Campaign “{campaign.name}” paused."]
    resumed = operator.post(url("resume", campaign), follow=True)
    assert shown_messages(resumed) == [f"Campaign “{campaign.name}” resumed."]

    assert "3 pending messages will be cancelled." in operator.get(url("cancel", campaign)).content.decode()
    cancelled = operator.post(url("cancel", campaign), follow=True)
    assert shown_messages(cancelled) == [
        f"Campaign “{campaign.name}” cancelled. 3 pending messages cancelled."
    ]
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.CANCELLED
    assert set(Message.objects.values_list("status", flat=True)) == {MessageStatus.CANCELLED}


def test_what_messages_were_built_from_is_frozen_once_launched(operator, fake_clock):
    campaign = make_campaign(categories=[audience()])
    editable = ['name="starts_at_0"', 'name="categories"', 'name="message_1_text"', 'name="message_2_text"']
    html = operator.get(url("change", campaign)).content.decode()
    assert all(field in html for field in editable)
    campaign_launch(campaign=campaign)
    html = operator.get(url("change", campaign)).content.decode()
    assert [field in html for field in editable] == [False, False, False, True]


def test_an_impossible_move_is_an_admin_message_not_an_error(operator, fake_clock):
    campaign = make_campaign()
    page = operator.get(url("resume", campaign))
    assert "this is not possible now" in page.content.decode()
    refused = operator.post(url("pause", campaign), follow=True)
    assert refused.status_code == 200
    assert shown_messages(refused) == [f"Campaign “{campaign.name}” is draft: it cannot be paused."]
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.DRAFT


def test_an_unknown_campaign_redirects_with_a_message(operator):
    response = operator.get(reverse("admin:campaigns_campaign_launch", args=[987654]), follow=True)
    assert response.status_code == 200
    assert "doesn’t exist" in shown_messages(response)[0]


def test_the_launch_action_wants_exactly_one_campaign(operator, fake_clock):
    campaigns = [make_campaign(), make_campaign()]
    response = operator.post(
        reverse("admin:campaigns_campaign_changelist"),
        {"action": "launch_selected", "_selected_action": [c.pk for c in campaigns]},
        follow=True,
    )
    assert shown_messages(response) == ["Choose exactly one campaign to launch."]
    assert {c.status for c in campaigns} == {CampaignStatus.DRAFT}


def test_launching_needs_the_change_permission(client, django_user_model, fake_clock):
    viewer = django_user_model.objects.create_user("viewer", password=None, is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_campaign"))
    client.force_login(viewer)
    campaign = make_campaign(categories=[audience()])
    assert client.post(url("launch", campaign)).status_code == 403
    assert client.post(url("cancel", campaign)).status_code == 403
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.DRAFT
