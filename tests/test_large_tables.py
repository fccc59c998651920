"""Tables that grow for years: lists are not counted whole, /health/'s counts stop at a cap,
and a large campaign's figures are cached with their age."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns.figures import campaign_counts
from campaigns.models import Contact
from config.paging import EstimatedCountPaginator
from messaging.models import Message, MessageStatus
from monitoring import health
from tests.factories import make_contact, make_device, make_sending_campaign, queue_message_1
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db


def _analyze(table: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {table}")


def test_an_unfiltered_list_of_a_large_table_is_counted_by_the_estimate_a_filtered_one_exactly(settings):
    settings.ESTIMATED_COUNT_ABOVE = 3
    for _ in range(4):
        make_contact()
    _analyze("campaigns_contact")
    make_contact(name="Arrivée après l'ANALYZE")

    everyone = EstimatedCountPaginator(Contact.objects.order_by("pk"), 2)
    named = EstimatedCountPaginator(Contact.objects.filter(name__startswith="Arrivée").order_by("pk"), 2)

    assert everyone.count == 4  # PostgreSQL's estimate, not a scan of the table
    assert named.count == 1


def test_a_small_table_is_counted_exactly(settings):
    settings.ESTIMATED_COUNT_ABOVE = 10_000
    for _ in range(3):
        make_contact()
    _analyze("campaigns_contact")
    make_contact()
    assert EstimatedCountPaginator(Contact.objects.order_by("pk"), 2).count == 4


def _admin_client(client):
    user = get_user_model().objects.create_superuser(username="admin", password="x", email="a@example.org")
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    "path",
    ["/admin/webhooks/webhookevent/", "/admin/messaging/message/", "/admin/campaigns/contact/"],
)
def test_admin_changelists_neither_count_the_whole_table_nor_list_its_distinct_values(client, path, settings):
    settings.ESTIMATED_COUNT_ABOVE = 0
    WebhookEvent.objects.create(event="message:out:ack", dedup_key="k1", payload={})
    make_contact()
    for table in ("webhooks_webhookevent", "messaging_message", "campaigns_contact"):
        _analyze(table)
    admin = _admin_client(client)
    with CaptureQueriesContext(connection) as queries:
        response = admin.get(path + "?o=1" if "contact" in path else path + "?status__exact=processed")
    assert response.status_code == 200
    sql = [query["sql"].upper() for query in queries]
    assert not any("DISTINCT" in statement for statement in sql)
    whole_counts = [s for s in sql if "COUNT(*)" in s and " WHERE " not in s and "PG_CLASS" not in s]
    assert whole_counts == []


def test_the_webhook_event_filter_lists_the_events_relance_handles(client):
    response = _admin_client(client).get("/admin/webhooks/webhookevent/")
    assert b"?event=message%3Ain%3Anew" in response.content


def test_health_counts_due_messages_up_to_the_cap(client, fake_clock, monkeypatch):
    monkeypatch.setattr(health, "COUNT_CAP", 3)
    campaign = make_sending_campaign(device=make_device())
    queue_message_1(campaign=campaign, contacts=[make_contact() for _ in range(5)])

    messages = client.get("/health/").json()["checks"]["messages"]

    assert (messages["due"], messages["due_capped"]) == (3, True)


def test_a_large_campaigns_figures_are_cached_with_their_age_a_small_ones_counted_live(fake_clock, settings):
    settings.FIGURES_CACHE_ABOVE = 3
    large, small = make_sending_campaign(device=make_device()), make_sending_campaign(device=make_device())
    queue_message_1(campaign=large, contacts=[make_contact() for _ in range(3)])
    queue_message_1(campaign=small, contacts=[make_contact()])
    counted_at = fake_clock.now()
    campaign_counts([large.pk])
    campaign_counts([small.pk])

    fake_clock.advance(20)
    Message.objects.filter(campaign__in=[large, small]).update(
        status=MessageStatus.SENT, sent_at=fake_clock.now()
    )
    counts = campaign_counts([large.pk, small.pk])

    assert (counts[large.pk].sent, counts[large.pk].as_of) == (0, counted_at)
    assert (counts[small.pk].sent, counts[small.pk].as_of) == (1, None)
    fake_clock.advance(settings.FIGURES_CACHE_SECONDS)
    assert campaign_counts([large.pk])[large.pk].sent == 3


def test_the_campaign_page_says_as_of_when_its_figures_are_cached(client, fake_clock, settings):
    operator = _admin_client(client)
    settings.FIGURES_CACHE_ABOVE = 2
    campaign = make_sending_campaign(device=make_device())
    queue_message_1(campaign=campaign, contacts=[make_contact() for _ in range(2)])
    operator.get(f"/campaigns/{campaign.pk}/")
    fake_clock.advance(timedelta(minutes=1).total_seconds() / 2)

    page = operator.get(f"/campaigns/{campaign.pk}/live/").content.decode()

    assert "as of" in page or "état à" in page


def test_the_contact_totals_of_a_large_table_are_cached_and_say_as_of(client, fake_clock, settings):
    settings.FIGURES_CACHE_ABOVE = 2
    operator = _admin_client(client)
    make_contact(), make_contact()
    operator.get("/contacts/")
    make_contact()

    cached = operator.get("/contacts/")
    fake_clock.advance(settings.FIGURES_CACHE_SECONDS)
    counted_again = operator.get("/contacts/")

    assert cached.context["totals"]["total"] == 2 and cached.context["totals_as_of"] is not None
    assert "as of" in cached.content.decode() or "état à" in cached.content.decode()
    assert counted_again.context["totals"]["total"] == 3


def test_a_filtered_list_the_planner_expects_to_be_large_is_counted_by_its_estimate(settings):
    for _ in range(6):
        make_contact(name="Martin")
    make_contact(name="Durand")
    _analyze("campaigns_contact")
    settings.ESTIMATED_COUNT_ABOVE = 5
    make_contact(name="Martin")  # after the ANALYZE: not in the estimates

    martins = EstimatedCountPaginator(Contact.objects.filter(name="Martin").order_by("pk"), 2)
    durands = EstimatedCountPaginator(Contact.objects.filter(name="Durand").order_by("pk"), 2)

    assert martins.count == 6  # the planner's estimate
    assert durands.count == 1  # expected small: counted
