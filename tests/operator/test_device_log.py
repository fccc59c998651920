"""A device's log: its recent sends (Message 1, Message 2, test sends) newest first, with time,
campaign, masked phone and status, test sends marked; logged-in operators only, in English and
French, paginated, linked from the dashboard and the device's admin page."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse

from campaigns.test_send import campaign_test_send
from config import clock
from messaging.models import Message, MessageKind, MessageStatus
from tests.factories import make_campaign, make_contact, make_device, make_message

OWN_PHONE = "+33699887766"


@pytest.fixture
def device_with_sends(db, fake_clock):
    """A device with a Message 1 sent an hour ago, a Message 2 sent after it, a failed Message 1,
    one still waiting its turn (not a send yet), and a test send queued now."""
    device = make_device(label="Shop number")
    campaign = make_campaign(device=device, name="Spring offer")
    ana = make_contact(first_name="Ana", phone="+33612345678")
    hour_ago = clock.now() - timedelta(hours=1)
    sends = {
        "message_1": make_message(
            campaign=campaign, contact=ana, status=MessageStatus.DELIVERED, sent_at=hour_ago
        ),
        "message_2": make_message(
            campaign=campaign,
            contact=ana,
            kind=MessageKind.MESSAGE_2,
            status=MessageStatus.SENT,
            sent_at=hour_ago + timedelta(minutes=5),
        ),
        "failed": make_message(
            campaign=campaign,
            contact=make_contact(phone="+33611110000"),
            status=MessageStatus.FAILED,
            attempts=1,
            failed_at=hour_ago + timedelta(minutes=10),
            last_error="InvalidNumber: not on WhatsApp",
        ),
    }
    make_message(campaign=campaign, contact=make_contact(phone="+33622223333"))  # waiting its turn
    sends["test"] = campaign_test_send(campaign=campaign, contact=ana, phone=OWN_PHONE).message
    return device, sends


def _rows(html: str) -> list[str]:
    return re.findall(r'<tr class="send kind-(\w+)" id="send-(\d+)"', html)


def test_the_log_lists_the_devices_sends_newest_first_with_test_sends_marked(operator, device_with_sends):
    device, sends = device_with_sends

    html = operator.get(reverse("device-log", args=[device.pk])).content.decode()

    order = ["test", "failed", "message_2", "message_1"]
    assert _rows(html) == [(sends[name].kind, str(sends[name].pk)) for name in order]
    test_row = html[html.index(f'id="send-{sends["test"].pk}"') :].split("</tr>")[0]
    assert '<span class="badge test-send">Test send</span>' in test_row and "+336•••••766" in test_row
    assert "pending" in test_row and "Spring offer" in test_row
    assert 'datetime="2026-03-29T09:00:00Z"' in test_row  # queued now, by the one clock
    assert "+336•••••678" in html and "+33612345678" not in html and OWN_PHONE not in html
    assert "InvalidNumber: not on WhatsApp" in html and "Message 2" in html


def test_the_log_is_in_french_for_a_french_browser(viewer, device_with_sends):
    device, _sends = device_with_sends

    html = viewer.get(reverse("device-log", args=[device.pk]), HTTP_ACCEPT_LANGUAGE="fr").content.decode()

    assert "Envois de « Shop number »" in html and "Envoi de test" in html and "Heure" in html


def test_the_log_is_paginated_and_shows_no_other_devices_sends(operator, device_with_sends, settings):
    device, _sends = device_with_sends
    make_message(device=make_device(), status=MessageStatus.SENT, sent_at=clock.now())
    settings.OPERATOR_PAGE_SIZE = 3

    first = operator.get(reverse("device-log", args=[device.pk])).content.decode()
    second = operator.get(reverse("device-log", args=[device.pk]), {"page": 2}).content.decode()

    assert len(_rows(first)) == 3 and len(_rows(second)) == 1 and "Page 2 of 2" in second


def test_the_log_needs_a_login_and_an_existing_device(client, operator, device_with_sends):
    device, _sends = device_with_sends
    assert operator.get(reverse("device-log", args=[device.pk + 1000])).status_code == 404
    operator.logout()
    anonymous = client.get(reverse("device-log", args=[device.pk]))
    assert anonymous.status_code == 302 and reverse("login") in anonymous["Location"]


def test_the_dashboard_and_the_device_admin_link_to_the_log(operator, device_with_sends):
    device, sends = device_with_sends
    Message.objects.filter(pk=sends["test"].pk).update(status=MessageStatus.SENT, sent_at=clock.now())
    url = reverse("device-log", args=[device.pk])

    dashboard = operator.get(reverse("dashboard")).content.decode()
    assert f'href="{url}"' in dashboard
    assert "Message 1: 1 · Message 2: 1 · failed: 1 · 1 test send" in dashboard
    assert (
        f'href="{url}"'
        in operator.get(reverse("admin:messaging_device_change", args=[device.pk])).content.decode()
    )


def test_a_page_of_the_log_is_an_index_range_however_long_the_devices_history(db, fake_clock):
    """A year of sends on a device (20,000, one set-based INSERT): its newest page is read
    through the log's index, a page's rows and no more, not sorted out of the whole history."""
    import json

    from django.db import connection

    from monitoring.device_log import device_sends

    device = make_device(label="Busy number")
    campaign = make_campaign(device=device)
    contact = make_contact()
    start = clock.now() - timedelta(days=365)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO messaging_message"
            " (campaign_id, contact_id, device_id, kind, content, status, phone, attempts, sent_at, test_key)"
            " SELECT %s, %s, %s, 'test', 'Bonjour', 'sent', %s, 1, %s + g * interval '25 minutes',"
            " gen_random_uuid()"
            " FROM generate_series(1, 20000) AS g",
            [campaign.pk, contact.pk, device.pk, OWN_PHONE, start],
        )
        cursor.execute("ANALYZE messaging_message")
        sql, params = device_sends(device)[:25].query.sql_with_params()
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    assert "message_device_log" in json.dumps(plan)
    assert _message_rows_read(plan[0]["Plan"]) <= 26  # one page, not 20,000 sorted


def _message_rows_read(node: dict) -> int:
    here = 0
    if node.get("Relation Name") == Message._meta.db_table and "Scan" in node["Node Type"]:
        here = (node["Actual Rows"] + node.get("Rows Removed by Filter", 0)) * node["Actual Loops"]
    return here + sum(_message_rows_read(child) for child in node.get("Plans", []))
