"""The admin works for an operator: every list and form opens; bad input is explained."""

import pytest
from django.urls import reverse

from campaigns.models import Contact
from messaging.models import MessageStatus
from tests.factories import make_campaign, make_category, make_contact, make_message

pytestmark = pytest.mark.django_db

MODELS = [
    "campaigns_category",
    "campaigns_contact",
    "campaigns_campaign",
    "messaging_device",
    "messaging_message",
    "messaging_deviceday",
]


@pytest.fixture
def operator(client, django_user_model):
    user = django_user_model.objects.create_superuser("operator", "op@example.com", "pw-for-tests-only")
    client.force_login(user)
    return client


def test_the_admin_needs_a_login(client):
    response = client.get(reverse("admin:campaigns_contact_changelist"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


@pytest.mark.parametrize("model", MODELS)
def test_every_list_opens_with_data(operator, model):
    make_message(contact=make_contact(categories=[make_category()]))
    response = operator.get(reverse(f"admin:{model}_changelist"))
    assert response.status_code == 200


def test_every_message_field_is_read_only(operator):
    message = make_message()
    assert operator.get(reverse("admin:messaging_message_add")).status_code == 403
    page = operator.get(reverse("admin:messaging_message_change", args=[message.pk]))
    assert page.status_code == 200
    assert b'name="status"' not in page.content
    assert MessageStatus.PENDING.label.encode() in page.content


def test_a_contact_typed_in_national_format_is_saved_in_e164(operator):
    response = operator.post(
        reverse("admin:campaigns_contact_add"),
        {
            "phone": "06 12 34 56 78",
            "first_name": "Léa",
            "name": "",
            "fields": "{}",
            "whatsapp_status": "unknown",
        },
    )
    assert response.status_code == 302, response.content
    assert Contact.objects.get().phone == "+33612345678"


def test_an_unusable_phone_is_refused_with_the_value_and_the_reason(operator):
    response = operator.post(
        reverse("admin:campaigns_contact_add"),
        {"phone": "06 12", "first_name": "Léa", "fields": "{}", "whatsapp_status": "unknown"},
    )
    assert response.status_code == 200
    assert "&#x27;06 12&#x27; is not a usable phone number: too short." in response.content.decode()
    assert not Contact.objects.exists()


def test_a_campaign_form_opens_for_a_new_campaign(operator):
    make_campaign()
    assert operator.get(reverse("admin:campaigns_campaign_add")).status_code == 200


def test_a_contact_whose_fields_are_not_an_object_is_refused(operator):
    response = operator.post(
        reverse("admin:campaigns_contact_add"),
        {"phone": "06 12 34 56 78", "fields": "[1]", "whatsapp_status": "unknown"},
    )
    assert response.status_code == 200
    assert "Expected an object" in response.content.decode()
    assert not Contact.objects.exists()


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("variable_fallbacks", '["first_name"]', "Expected an object"),
        ("variable_fallbacks", '{"first_name": 5}', "Every value must be a text"),
        ("message_1_template_variables", "5", "Expected a list or an object"),
    ],
)
def test_a_campaign_with_json_of_the_wrong_shape_is_refused_and_its_launch_page_still_opens(
    operator, field, value, error
):
    campaign = make_campaign(categories=[make_category()])
    form = {
        "name": campaign.name,
        "devices": campaign.device_ids(),
        "categories": [c.pk for c in campaign.categories.all()],
        "message_1_text": campaign.message_1_text,
        "message_2_text": campaign.message_2_text,
        "message_1_template_variables": "[]",
        "variable_fallbacks": "{}",
        "message_1_variants": "[]",
        "fatigue_days": "7",
    }
    change = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    response = operator.post(change, {**form, field: value})
    assert response.status_code == 200 and error in response.content.decode()
    assert operator.post(change, form).status_code == 302  # the same form, the right shape
    assert operator.get(reverse("admin:campaigns_campaign_launch", args=[campaign.pk])).status_code == 200
