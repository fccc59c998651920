"""What the plan cannot deliver, and a banned or unlinked number, said where the operator looks."""

import pytest
from django.urls import reverse

from messaging.models import Device
from monitoring.health import health_report
from monitoring.models import Incident
from tests.factories import make_device

pytestmark = pytest.mark.django_db


def test_health_says_what_a_gateway_plan_cannot_deliver_and_stays_healthy_for_it(fake_clock):
    device = make_device()
    Device.objects.filter(pk=device.pk).update(plan="wa-gateway", session_status="online")
    devices = health_report()["checks"]["devices"]
    assert devices["ok"] is True
    ours = next(d for d in devices["devices"] if d["id"] == device.pk)
    assert "no Message 2, no STOP" in ours["plan_warnings"][0]


def test_the_dashboard_shows_the_plan_warning_and_the_banner_of_a_banned_number(admin_client, fake_clock):
    device = make_device()
    Device.objects.filter(pk=device.pk).update(plan="io-professional")
    Incident.objects.create(
        kind="number_banned", key=str(device.pk), summary="Number X banned", opened_at=fake_clock.now()
    )
    page = admin_client.get(reverse("dashboard")).content.decode()
    assert "no delivery or read receipts" in page
    assert "Number X banned" in page


def test_the_launch_page_says_that_replies_will_not_arrive_on_a_gateway_plan(admin_client, fake_clock):
    from tests.factories import make_campaign, make_category, make_contact

    category = make_category()
    make_contact(categories=[category])
    device = make_device()
    Device.objects.filter(pk=device.pk).update(plan="wa-gateway")
    campaign = make_campaign(categories=[category], device=device)
    page = admin_client.get(reverse("admin:campaigns_campaign_launch", args=[campaign.pk])).content.decode()
    assert "replies will not arrive: no Message 2, no STOP" in page
