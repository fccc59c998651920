"""Daily figures per device and UTC day, and the quota alert level [legacy 1.3, 2.5].

Counted from the messages themselves (each event leaves a timestamp on its row), so
there is nothing to synchronise: the database is the source. A campaign's own figures
(funnel, failures, progress) are the campaign's: campaigns/figures.py.
"""

from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

from django.conf import settings
from django.db.models import Count, Q

from config import clock
from messaging.claims import device_policy
from messaging.models import Device, DeviceDay, Message, MessageKind, MessageStatus
from messaging.pacing import window_is_open


class AlertLevel(StrEnum):
    OK = "ok"
    ATTENTION = "attention"
    DANGER = "danger"
    BLOCKED = "blocked"


LEVEL_ORDER = list(AlertLevel)


def alert_level(*, sends: int, limit: int) -> AlertLevel:
    """ok up to 75% of the limit, attention to 90%, danger to 100%, blocked above.

    For the default limit of 1000: ok 0–750, attention 751–900, danger 901–1000, blocked
    1001+ (possible when an operator lowers the limit during the day). Thresholds are settings.
    """
    if sends > limit:
        return AlertLevel.BLOCKED
    if sends > limit * settings.ALERT_DANGER_SHARE:
        return AlertLevel.DANGER
    if sends > limit * settings.ALERT_ATTENTION_SHARE:
        return AlertLevel.ATTENTION
    return AlertLevel.OK


@dataclass(frozen=True)
class DeviceFigures:
    device_id: int
    device: str
    day: str
    sends: int
    limit: int
    level: str
    waits_for_midnight: bool
    message_1_sent: int
    message_2_sent: int
    failed: int
    delivered: int
    read: int
    replies: int
    opt_outs: int
    # Test sends count in `sends` (the device's quota) but in no campaign (campaigns/test_send.py).
    test_sent: int = 0
    # Opt-out confirmations count in `sends` (paced as Message 2) and in no funnel.
    opt_out_confirmed: int = 0
    own_limit: int = 0  # the device's own limit: `limit` is lower while its number warms up
    warming_up: bool = False
    window_open: bool = True  # its send window is open now (Message 1 may go out)

    def as_dict(self) -> dict:
        return asdict(self)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The UTC day as a half-open interval."""
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def daily_figures(day: date) -> list[DeviceFigures]:
    """One row per device for the UTC `day`."""
    start, end = day_bounds(day)
    counts = _message_counts(start, end)
    sends = {row.device_id: row.total for row in DeviceDay.objects.filter(day=day)}
    opt_outs = _opt_outs_by_device(start, end)
    return [
        _figures(device, day, sends.get(device.pk, 0), counts.get(device.pk, {}), opt_outs.get(device.pk, 0))
        for device in Device.objects.order_by("label")
    ]


def _figures(device: Device, day: date, sends: int, counts: dict, opt_outs: int) -> DeviceFigures:
    # The day's effective limit: a young number's warm-up step lowers the gauge and its levels.
    policy = device_policy(device)
    limit = policy.limit_on(day)
    return DeviceFigures(
        device_id=device.pk,
        device=device.label,
        day=day.isoformat(),
        sends=sends,
        limit=limit,
        level=alert_level(sends=sends, limit=limit),
        waits_for_midnight=sends >= limit,
        own_limit=device.daily_limit,
        warming_up=policy.warming_up(day),
        window_open=window_is_open(policy.window, policy.zone, clock.now()),
        message_1_sent=counts.get("message_1_sent", 0),
        message_2_sent=counts.get("message_2_sent", 0),
        failed=counts.get("failed", 0),
        delivered=counts.get("delivered", 0),
        read=counts.get("read", 0),
        replies=counts.get("replies", 0),
        opt_outs=opt_outs,
        test_sent=counts.get("test_sent", 0),
        opt_out_confirmed=counts.get("opt_out_confirmed", 0),
    )


def _message_counts(start: datetime, end: datetime) -> dict[int, dict]:
    def between(field: str) -> Q:
        return Q(**{f"{field}__gte": start, f"{field}__lt": end})

    rows = (
        Message.objects.filter(
            between("sent_at")
            | between("failed_at")
            | between("delivered_at")
            | between("read_at")
            | between("replied_at")
        )
        .values("device_id")
        .annotate(
            message_1_sent=Count("id", filter=between("sent_at") & Q(kind=MessageKind.MESSAGE_1)),
            message_2_sent=Count("id", filter=between("sent_at") & Q(kind=MessageKind.MESSAGE_2)),
            test_sent=Count("id", filter=between("sent_at") & Q(kind=MessageKind.TEST)),
            opt_out_confirmed=Count("id", filter=between("sent_at") & Q(kind=MessageKind.OPT_OUT)),
            failed=Count("id", filter=between("failed_at") & Q(status=MessageStatus.FAILED)),
            delivered=Count("id", filter=between("delivered_at")),
            read=Count("id", filter=between("read_at")),
            replies=Count("id", filter=between("replied_at")),
        )
    )
    return {row.pop("device_id"): row for row in rows}


def _opt_outs_by_device(start: datetime, end: datetime) -> dict[int, int]:
    """Contacts who opted out that day, under each device that had written to them."""
    rows = (
        Message.objects.filter(contact__opted_out_at__gte=start, contact__opted_out_at__lt=end)
        .values("device_id")
        .annotate(opt_outs=Count("contact_id", distinct=True))
    )
    return {row["device_id"]: row["opt_outs"] for row in rows}
