"""Staff set a device's time zone, send window and number date through the API (issue 21)."""

import pytest

from tests.factories import make_device

pytestmark = pytest.mark.django_db


def test_staff_set_a_device_window_and_zone(staff):
    device = make_device()
    body = {"send_window": "mon-fri 09:00-18:00; sat 10:00-12:00", "time_zone": "America/New_York"}
    response = staff.patch(f"/api/devices/{device.pk}/", body, format="json")
    assert response.status_code == 200, response.json()
    device.refresh_from_db()
    assert (device.send_window, device.time_zone) == (body["send_window"], body["time_zone"])


@pytest.mark.parametrize(
    ("field", "value"),
    [("send_window", "mon 20:00-09:00"), ("time_zone", "Mars/Olympus"), ("number_since", "x")],
)
def test_an_unreadable_window_or_zone_is_refused_with_a_reason(staff, field, value):
    device = make_device()
    response = staff.patch(f"/api/devices/{device.pk}/", {field: value}, format="json")
    assert response.status_code == 400
    assert list(response.json()) == [field]  # field errors, as everywhere in the API


def test_a_device_has_the_default_window_and_zone_and_its_number_is_new_today(reader, settings):
    settings.DEVICE_SEND_WINDOW, settings.DEVICE_TIME_ZONE = "mon-sun 09:00-20:00", "Europe/Paris"
    device = make_device()
    body = reader.get(f"/api/devices/{device.pk}/").json()
    assert (body["send_window"], body["time_zone"]) == ("mon-sun 09:00-20:00", "Europe/Paris")
    assert body["number_since"] == device.created_at.date().isoformat()


def test_an_unreadable_window_is_explained_in_french_too(staff):
    device = make_device()
    response = staff.patch(
        f"/api/devices/{device.pk}/",
        {"send_window": "lun 09:00-20:00"},
        format="json",
        HTTP_ACCEPT_LANGUAGE="fr",
    )
    assert response.status_code == 400
    (error,) = response.json()["send_window"]
    assert error.startswith("Plage d’envoi illisible (jour inconnu « lun » : utilisez mon, tue")


def test_a_launch_through_the_api_says_when_a_young_number_sends_less(staff, settings):
    from tests.factories import make_campaign, make_category, make_contact

    settings.DEVICE_WARMUP, settings.MESSAGE_2_RESERVE_SHARE = "0-3:50", 0.1
    category = make_category()
    for _ in range(3):
        make_contact(categories=[category])
    campaign = make_campaign(device=make_device(send_window="always"), categories=[category])
    response = staff.post(f"/api/campaigns/{campaign.pk}/launch/", {}, format="json")
    assert response.status_code == 200, response.json()
    (share,) = response.json()["devices"]
    assert (share["daily_limit"], share["warming_up"], share["remaining_today"]) == (50, True, 45)
