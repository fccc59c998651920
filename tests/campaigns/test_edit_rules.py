"""What may change after launch is the campaign's own rule: the admin and the API agree."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from campaigns.launch import campaign_launch
from campaigns.models import FROZEN_AFTER_LAUNCH, Campaign
from tests.factories import make_campaign, make_category, make_contact

pytestmark = pytest.mark.django_db

EDITABLE_AFTER_LAUNCH = {"name", "message_2_text", "variable_fallbacks"}


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser("operator", "op@example.com", None)


@pytest.fixture
def launched():
    category = make_category()
    make_contact(categories=[category])
    campaign = make_campaign(categories=[category])
    return campaign_launch(campaign=campaign).campaign


def admin_editable(client, campaign) -> set[str]:
    form = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).context["adminform"]
    return set(form.form.fields) - set(form.readonly_fields)


def test_the_model_says_what_freezes_at_launch(launched):
    assert make_campaign().frozen_fields() == ()
    assert launched.frozen_fields() == FROZEN_AFTER_LAUNCH
    assert launched.edit_refusal(["name", "message_2_text"]) is None
    assert "can no longer be changed" in launched.edit_refusal(["categories"])
    assert make_campaign().delete_refusal() is None
    assert "only a draft can be deleted" in launched.delete_refusal()


def test_admin_and_api_allow_the_same_edits_after_launch(client, superuser, launched):
    client.force_login(superuser)
    assert admin_editable(client, launched) & set(FROZEN_AFTER_LAUNCH) == set()
    assert EDITABLE_AFTER_LAUNCH <= admin_editable(client, launched)
    api = APIClient()
    api.force_authenticate(superuser)
    detail = f"/api/campaigns/{launched.pk}/"
    assert api.patch(detail, {"message_2_text": "Merci !"}, format="json").status_code == 200
    other = make_category()
    refused = api.patch(detail, {"categories": [other.pk]}, format="json")
    assert (refused.status_code, refused.json()["code"]) == (409, "frozen_after_launch")


def test_admin_and_api_both_refuse_deleting_a_launched_campaign(client, superuser, launched):
    client.force_login(superuser)
    delete = client.post(reverse("admin:campaigns_campaign_delete", args=[launched.pk]), {"post": "yes"})
    assert delete.status_code == 403
    api = APIClient()
    api.force_authenticate(superuser)
    assert api.delete(f"/api/campaigns/{launched.pk}/").status_code == 409
    assert Campaign.objects.filter(pk=launched.pk).exists()
    draft = make_campaign()
    assert (
        client.post(reverse("admin:campaigns_campaign_delete", args=[draft.pk]), {"post": "yes"}).status_code
        == 302
    )
