"""Cloning a campaign into a new draft: through the function, the admin, the operator page and the API."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from rest_framework.test import APIClient

from campaigns.cloning import campaign_clone
from campaigns.launch import campaign_launch
from campaigns.models import Campaign, CampaignStatus
from tests.factories import make_campaign, make_category, make_contact, make_device

pytestmark = pytest.mark.django_db


@pytest.fixture
def launched():
    """A campaign that was launched, with everything an operator can write filled in."""
    categories = [make_category("Salon"), make_category("Clients")]
    make_contact(categories=categories[:1])
    campaign = make_campaign(
        name="Printemps",
        device=make_device(label="Paris"),
        categories=categories,
        message_1_text="{Bonjour|Salut} {{ first_name }}",
        message_1_variants=["Coucou {{ first_name }}"],
        message_2_text="Merci {{ first_name }}",
        variable_fallbacks={"first_name": "vous"},
    )
    campaign_launch(campaign=campaign)
    campaign.refresh_from_db()
    return campaign


def content(campaign: Campaign) -> dict:
    fields = ("message_1_text", "message_1_variants", "message_2_text", "variable_fallbacks")
    fields += ("starts_at",)
    facts = {name: getattr(campaign, name) for name in fields}
    facts["devices"] = campaign.device_ids()
    return facts | {"categories": sorted(campaign.categories.values_list("name", flat=True))}


def test_a_clone_is_a_draft_with_the_content_and_none_of_the_history(launched):
    user = get_user_model().objects.create_user("ana")
    clone = campaign_clone(campaign=launched, by=user)

    assert clone.pk != launched.pk
    assert clone.name == "Printemps (copy)"
    assert content(clone) == content(launched)
    assert clone.status == CampaignStatus.DRAFT
    assert (clone.launched_at, clone.launched_by, clone.finished_at) == (None, None, None)
    assert clone.created_by == user
    assert not clone.messages.exists() and launched.messages.count() == 1
    # The clone launches on its own.
    assert campaign_launch(campaign=clone).messages_created == 1


def test_a_long_name_still_fits():
    clone = campaign_clone(campaign=make_campaign(name="x" * 200))
    assert len(clone.name) == 200


def test_the_admin_action_clones_each_selected_campaign(client, launched):
    client.force_login(get_user_model().objects.create_superuser("admin", "a@example.com", None))
    changelist = reverse("admin:campaigns_campaign_changelist")
    data = {"action": "clone_selected", "_selected_action": [launched.pk]}

    response = client.post(changelist, data, follow=True)

    clone = Campaign.objects.get(name="Printemps (copy)")
    assert content(clone) == content(launched) and clone.status == CampaignStatus.DRAFT
    messages = [str(m) for m in response.context["messages"]]
    assert messages == ["Campaign “Printemps” cloned into the draft “Printemps (copy)”."]


def test_the_operator_page_clones_and_opens_the_new_draft(client, launched):
    client.force_login(get_user_model().objects.create_user("op", is_staff=True, is_superuser=True))
    page = client.get(reverse("campaign-detail", args=[launched.pk])).content.decode()
    assert reverse("campaign-clone", args=[launched.pk]) in page

    response = client.post(reverse("campaign-clone", args=[launched.pk]), follow=True)

    clone = Campaign.objects.get(name="Printemps (copy)")
    assert response.redirect_chain[-1][0] == reverse("campaign-detail", args=[clone.pk])
    assert "cloned into the draft" in response.content.decode()


def test_a_viewer_cannot_clone(client, launched):
    client.force_login(get_user_model().objects.create_user("viewer"))
    assert client.post(reverse("campaign-clone", args=[launched.pk])).status_code == 403
    assert client.get(reverse("campaign-clone", args=[launched.pk])).status_code == 405
    assert Campaign.objects.count() == 1


def test_the_api_clone_answers_201_with_the_new_draft(launched):
    api = APIClient()
    api.force_authenticate(get_user_model().objects.create_superuser("api", "b@example.com", None))

    response = api.post(f"/api/campaigns/{launched.pk}/clone/")

    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "draft" and body["name"] == "Printemps (copy)" and body["id"] != launched.pk
    assert body["message_1_text"] == launched.message_1_text
    assert sorted(body["categories"]) == sorted(launched.categories.values_list("pk", flat=True))
    assert api.post("/api/campaigns/999999/clone/").status_code == 404
