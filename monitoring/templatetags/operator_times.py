"""Times on operator pages: in the installation's time zone (TIME_ZONE), UTC on hover.

`{{ message.sent_at|when }}` or `{{ campaign.launched_at|when:"Y-m-d H:i" }}` renders
`<time datetime="…Z" title="… UTC">local time</time>`; None renders "—".
"""

from datetime import UTC, datetime

from django import template
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.html import format_html

register = template.Library()


@register.filter
def when(value: datetime | None, layout: str = "Y-m-d H:i:s"):
    if value is None:
        return "—"
    utc = value.astimezone(UTC)
    local = timezone.localtime(value, timezone.get_default_timezone())
    return format_html(
        '<time datetime="{}" title="{} UTC">{}</time>',
        utc.isoformat().replace("+00:00", "Z"),
        date_format(utc, "Y-m-d H:i:s"),
        date_format(local, layout),
    )
