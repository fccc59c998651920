"""Times on operator pages: the installation's TIME_ZONE on the page, UTC on hover, for any moment."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from django.test import override_settings
from hypothesis import given
from hypothesis import strategies as st

from monitoring.templatetags.operator_times import when

ZONES = ("UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Pacific/Chatham")


@given(
    moment=st.datetimes(
        min_value=datetime(2001, 1, 1), max_value=datetime(2099, 1, 1), timezones=st.just(UTC)
    ),
    zone=st.sampled_from(ZONES),
)
def test_a_time_shows_the_local_time_with_the_utc_one_on_hover(moment, zone):
    with override_settings(TIME_ZONE=zone):
        html = str(when(moment, "Y-m-d H:i:s"))
    local = moment.astimezone(ZoneInfo(zone))
    assert f'title="{moment:%Y-%m-%d %H:%M:%S} UTC"' in html
    assert html.endswith(f">{local:%Y-%m-%d %H:%M:%S}</time>")


def test_no_time_is_a_dash():
    assert when(None) == "—"
