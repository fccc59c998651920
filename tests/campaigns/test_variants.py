"""Message 1 variants and spintax: expansion, the deal at launch, preview, timeline, CSV, funnel,
and malformed spintax refused in the admin, the API and at launch (never sent with braces)."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from campaigns.launch import campaign_launch, launch_preview
from campaigns.models import Campaign
from campaigns.refusals import MalformedVariants
from campaigns.rendering import SpintaxError, message_1_variants, spintax_expand, variant_counts
from config import clock
from messaging.models import Message, MessageKind
from tests.factories import make_campaign, make_category, make_contact

SPUN = "{Bonjour|Salut|Hello} {{ first_name }}"


# --- Expansion (no database) -----------------------------------------------------------------


def test_a_group_makes_one_text_per_choice_and_variables_stay_variables():
    assert spintax_expand(SPUN) == [
        "Bonjour {{ first_name }}",
        "Salut {{ first_name }}",
        "Hello {{ first_name }}",
    ]
    assert spintax_expand("{a|{b|c}} x | y {{1}}") == ["a x | y {{1}}", "b x | y {{1}}", "c x | y {{1}}"]
    assert spintax_expand("{Hi|} there") == ["Hi there", " there"]
    assert spintax_expand("No braces at all") == ["No braces at all"]


@pytest.mark.parametrize(
    "text, reason",
    [
        ("{Bonjour|Salut {{ first_name }}", "“{” at character 1 is never closed"),
        ("Bonjour} Ana", "“}” at character 8 closes no “{”"),
        ("{Bonjour} Ana", "has a single choice"),
        ("Bonjour {{ first_name", "“{{” at character 9 is never closed"),
        ("{a|b}{c|d}{e|f}{g|h}{i|j}{k|l}{m|n}", "more than 100 different texts"),
    ],
)
def test_malformed_spintax_is_an_error_that_says_where(text, reason):
    with pytest.raises(SpintaxError, match=re.escape(reason)):
        spintax_expand(text)


def _outside_variables(text: str) -> str:
    return re.sub(r"{{.*?}}", "", text)


@given(st.text(alphabet="ab|{} ", max_size=14))
def test_whatever_the_text_a_variant_never_holds_a_stray_brace(text):
    try:
        variants = spintax_expand(text)
    except SpintaxError:
        return
    assert variants
    for variant in variants:
        assert "{" not in _outside_variables(variant) and "}" not in _outside_variables(variant)


@given(
    st.lists(st.lists(st.text(alphabet="xyz", min_size=1, max_size=3), min_size=2, max_size=3), max_size=3)
)
def test_groups_of_distinct_words_make_the_product_of_their_choices(groups):
    text = " ".join("{" + "|".join(choices) + "}" for choices in groups)
    expected = 1
    for choices in groups:
        expected *= len(set(choices))
    # Distinct choices in distinct groups may still join into the same text ("x" + "xy" = "xx" + "y").
    assert len(spintax_expand(text)) <= expected


@given(st.integers(2, 7), st.integers(0, 500))
def test_the_deal_gives_every_variant_the_same_count_within_one(variants, recipients):
    counts = variant_counts(variants, recipients)
    assert sum(counts) == recipients and max(counts) - min(counts) <= 1


def test_other_variants_add_their_own_texts_once():
    assert message_1_variants("{Hi|Hello}", ["Hello", "Hey {{ name }}"]) == ["Hi", "Hello", "Hey {{ name }}"]


# --- Launch ------------------------------------------------------------------------------------


@pytest.fixture
def audience(db):
    category = make_category("Clients")
    return category, [make_contact(first_name=f"P{n}", categories=[category]) for n in range(10)]


def _deal(campaign: Campaign) -> dict[int, tuple[int, str]]:
    rows = campaign.messages.filter(kind=MessageKind.MESSAGE_1).values_list(
        "contact_id", "variant", "content"
    )
    return {contact: (variant, content) for contact, variant, content in rows}


def test_launch_deals_the_variants_evenly_and_stores_each_on_its_message(audience):
    category, contacts = audience
    campaign = make_campaign(categories=[category], message_1_text=SPUN)

    assert campaign_launch(campaign=campaign).messages_created == 10

    deal = _deal(campaign)
    greetings = ["Bonjour", "Salut", "Hello"]
    for contact in contacts:
        variant, content = deal[contact.pk]
        assert content == f"{greetings[variant - 1]} {contact.first_name}"  # no brace, the variable filled
    counts = [sum(1 for variant, _ in deal.values() if variant == n) for n in (1, 2, 3)]
    assert counts == [4, 3, 3]


def test_the_same_audience_gets_the_same_deal(audience):
    category, _contacts = audience
    first = make_campaign(categories=[category], message_1_text=SPUN)
    second = make_campaign(categories=[category], message_1_text=SPUN)
    campaign_launch(campaign=first)
    campaign_launch(campaign=second)
    assert _deal(first) == _deal(second)


def test_a_single_text_stores_no_variant(audience):
    category, _contacts = audience
    campaign = make_campaign(categories=[category])
    campaign_launch(campaign=campaign)
    assert set(campaign.messages.values_list("variant", flat=True)) == {None}


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(recipients=st.integers(1, 12), others=st.integers(1, 3))
@pytest.mark.django_db
def test_for_any_audience_each_variant_goes_to_the_counts_the_preview_announced(recipients, others):
    category = make_category()
    for _ in range(recipients):
        make_contact(categories=[category])
    variants = [f"Variant {n} {{{{ first_name }}}}" for n in range(others)]
    campaign = make_campaign(categories=[category], message_1_text="{Hi|Hello}", message_1_variants=variants)
    announced = [v.recipients for v in launch_preview(campaign=campaign).variants]

    campaign_launch(campaign=campaign)

    stored = [campaign.messages.filter(variant=n).count() for n in range(1, others + 3)]
    assert stored == announced and sum(stored) == recipients and max(stored) - min(stored) <= 1


def test_a_malformed_text_saved_behind_the_editors_back_is_refused_at_launch(audience):
    category, _contacts = audience
    campaign = make_campaign(categories=[category], message_1_text="{Bonjour|Salut {{ first_name }}")

    with pytest.raises(MalformedVariants, match="never closed"):
        campaign_launch(campaign=campaign)

    assert not Message.objects.exists()
    assert MalformedVariants in {type(r) for r in launch_preview(campaign=campaign).refusals()}


# --- Admin, operator pages, API, command -----------------------------------------------------------


@pytest.fixture
def admin_client(client, db):
    client.force_login(get_user_model().objects.create_superuser("admin", "a@example.com", None))
    return client


@pytest.fixture
def api(db):
    client = APIClient()
    client.force_authenticate(get_user_model().objects.create_superuser("api", "b@example.com", None))
    return client


def test_the_launch_page_shows_every_variant_with_its_count(admin_client, audience):
    category, contacts = audience
    campaign = make_campaign(categories=[category], message_1_text=SPUN)

    page = admin_client.get(reverse("admin:campaigns_campaign_launch", args=[campaign.pk])).content.decode()

    for number, (greeting, count) in enumerate([("Bonjour", 4), ("Salut", 3), ("Hello", 3)], start=1):
        row = re.search(rf'<tr id="launch-variant-{number}">(.*?)</tr>', page, re.S).group(1)
        assert f'<td class="count">{count}</td>' in row
        assert f"{greeting} {{{{ first_name }}}}" in row and f"{greeting} {contacts[0].first_name}" in row


def test_the_admin_editor_refuses_malformed_spintax_with_the_reason(admin_client, audience):
    category, _contacts = audience
    campaign = make_campaign(categories=[category])
    form = {
        "name": campaign.name,
        "devices": campaign.device_ids(),
        "categories": [category.pk],
        "message_1_text": "{Bonjour|Salut",
        "message_1_variants": '["ok", "{bad"]',
        "message_1_template_variables": "[]",
        "message_2_text": "Merci",
        "variable_fallbacks": "{}",
    }
    response = admin_client.post(reverse("admin:campaigns_campaign_change", args=[campaign.pk]), form)

    assert response.status_code == 200
    page = response.content.decode()
    assert "is never closed by a “}”" in page and "Variant 2:" in page
    campaign.refresh_from_db()
    assert campaign.message_1_text == "Bonjour {{ first_name }}"


def test_the_api_refuses_malformed_spintax_and_accepts_variants(api, audience):
    category, _contacts = audience
    body = {
        "name": "Spun",
        "devices": make_campaign().device_ids(),
        "categories": [category.pk],
        "message_1_text": "{Bonjour|Salut {{ first_name }}",
        "message_2_text": "Merci",
    }
    refused = api.post("/api/campaigns/", body, format="json")
    assert refused.status_code == 400 and "never closed" in str(refused.json()["message_1_text"])
    refused = api.post(
        "/api/campaigns/", body | {"message_1_text": "Hi", "message_1_variants": ["a}"]}, format="json"
    )
    assert refused.status_code == 400 and "Variant 1:" in str(refused.json()["message_1_variants"])

    created = api.post(
        "/api/campaigns/", body | {"message_1_text": SPUN, "message_1_variants": ["Coucou"]}, format="json"
    )
    assert created.status_code == 201, created.json()
    preview = api.get(f"/api/campaigns/{created.json()['id']}/stats/").json()["preview"]
    assert [(v["variant"], v["recipients"]) for v in preview["variants"]] == [(1, 3), (2, 3), (3, 2), (4, 2)]


def test_timeline_csv_funnel_and_stats_split_by_variant(admin_client, api, audience):
    category, _contacts = audience
    campaign = make_campaign(categories=[category], message_1_text="{Bonjour|Salut} {{ first_name }}")
    campaign_launch(campaign=campaign)
    replied = Message.objects.filter(campaign=campaign, variant=2).order_by("contact_id")[:3]
    Message.objects.filter(pk__in=[m.pk for m in replied]).update(replied_at=clock.now(), sent_at=clock.now())

    page = admin_client.get(reverse("campaign-detail", args=[campaign.pk])).content.decode()
    assert re.search(r'<tr id="variant-1"><td>1</td><td>Bonjour {{ first_name }}</td><td>5</td>', page)
    assert re.search(r'<tr id="variant-2">.*?<td class="replied">3</td>', page)
    assert page.count('<td class="variant">1</td>') == 5 and page.count('<td class="variant">2</td>') == 5

    csv = b"".join(admin_client.get(reverse("campaign-csv", args=[campaign.pk])).streaming_content).decode()
    header, *lines = csv.lstrip("\ufeff").splitlines()
    column = header.split(",").index("message_1_variant")
    assert sorted(line.split(",")[column] for line in lines) == ["1"] * 5 + ["2"] * 5

    stats = api.get(f"/api/campaigns/{campaign.pk}/stats/").json()
    assert [(v["variant"], v["recipients"], v["replied"]) for v in stats["by_variant"]] == [
        (1, 5, 0),
        (2, 5, 3),
    ]


def test_the_launch_command_prints_each_variant(manage, audience):
    category, _contacts = audience
    campaign = make_campaign(categories=[category], message_1_text=SPUN)
    code, out, _err = manage("launch_campaign", campaign.pk, "--dry-run")
    assert code == 0
    assert "Variant 1, to 4 recipients: Bonjour {{ first_name }}" in out
    assert "Variant 3, to 3 recipients: Hello {{ first_name }}" in out
