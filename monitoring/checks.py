"""The periodic health check and the daily rollover: what runs with nobody looking.

Incidents come from here only: the 2-minute check and `check_workers` turn the findings of
monitoring/health.py and the day's figures into incidents (monitoring/alerts.py mails them).
`/health/` and the dashboard read the same findings and change nothing.
"""

import logging
from datetime import UTC, datetime, time, timedelta

from django.conf import settings
from django.core.mail import mail_admins
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from config import clock
from messaging import wassenger
from messaging.devices import (
    BANNED,
    UNLINKED,
    device_session_apply,
    device_state_of,
    device_status_apply,
    device_trouble,
    webhook_ours,
)
from messaging.models import Device
from messaging.trouble import devices_slow_down
from monitoring.alerts import incident_close, incident_open, incident_sync
from monitoring.figures import LEVEL_ORDER, AlertLevel, DeviceFigures, daily_figures
from monitoring.health import (
    SENDERS,
    Workers,
    heartbeat_write,
    messages_check,
    senders_stuck_check,
    workers_state,
)
from monitoring.models import DailyReport, Incident

logger = logging.getLogger(__name__)


def health_check_run() -> dict:
    """Every 2 minutes: heartbeat, Wassenger reachable, and the alerts that follow [8.4]."""
    report = {"wassenger": wassenger_check(), "messages": messages_check()}
    heartbeat_write(report)
    devices_slow_down(clock.now())  # a device whose recent sends go bad stops sending
    devices_incident_sync()  # from what the check or a `number:session` event last said
    workers = workers_state()
    workers_incident_sync(workers)  # the heartbeat is fresh again: an outage is over
    senders_stuck_incident_sync(workers)
    today = daily_figures(clock.now().date())
    for row in today:
        alerts_for_device(row)
    return report


def workers_incident_sync(workers: Workers) -> None:
    """One "workers down" incident per cluster (and for the sender loops) while it is
    silent, closed once it beats again."""
    for watched in workers.watched:
        incident_sync(kind="workers_down", key=watched.name, active=watched.down, summary=watched.summary)


def senders_stuck_incident_sync(workers: Workers) -> None:
    """Senders up, yet a device that may send has had messages due for long: one incident
    per device, closed once it sends (or stops being due). Senders down is its own incident."""
    stuck = senders_stuck_check()["devices"] if not workers.of(SENDERS).stale else []
    stuck_ids = {d["id"]: d for d in stuck}
    open_now = Incident.objects.filter(kind="senders_stuck", closed_at=None)
    open_keys = set(open_now.values_list("key", flat=True))
    for key in open_keys | {str(i) for i in stuck_ids}:
        found = stuck_ids.get(int(key))
        summary = (
            f"Senders stuck: device {key} has had messages due for {found['due_for_seconds']} s, none sent"
            if found
            else f"Senders stuck: device {key}"
        )
        incident_sync(kind="senders_stuck", key=key, active=found is not None, summary=summary)


def wassenger_check() -> dict:
    """Wassenger answers, and what it says of each number: session, status, plan (stored on
    the device, halting or resuming it)."""
    try:
        states = wassenger.device_states()
    except wassenger.WassengerError as error:
        return {"ok": False, "error": type(error).__name__}
    devices_health_apply(states)
    return {"ok": True, "webhook": webhook_check()}


def webhook_check() -> str:
    """Relance's webhook is still active at Wassenger; one Wassenger disabled (after refused
    deliveries) is enabled again, and an incident is open while that fails. A failed listing
    changes nothing: Wassenger being unreachable is not the webhook's fault."""
    try:
        hook = webhook_ours(wassenger.list_webhooks())
    except wassenger.WassengerError as error:
        return f"not checked ({type(error).__name__})"
    if hook is None:
        return "not registered (python manage.py wassenger_connect)"
    why = ""
    if hook.status != "active":
        try:
            hook = wassenger.enable_webhook(hook.id) or hook
        except wassenger.WassengerError as error:
            why = type(error).__name__
    active = hook.status == "active" and not why
    summary = _("Relance's webhook is disabled at Wassenger and could not be enabled again (%(why)s).")
    text = str(summary % {"why": why or hook.status})
    incident_sync(kind="webhook_disabled", key="wassenger", active=not active, summary=text)
    return "active" if active else f"disabled ({why or hook.status})"


def devices_health_apply(states: list) -> None:
    """Store and act on what `GET /v1/devices` said of each of our devices."""
    now = clock.now()
    devices = list(Device.objects.all())
    for device in devices:
        state = device_state_of(device, states, only_device=len(devices) == 1)
        if state is None:
            continue
        Device.objects.filter(pk=device.pk).update(
            wassenger_status=state.status[:32], plan=state.plan[:64], health_checked_at=now
        )
        if state.session_status:  # no session object: nothing known, nothing changed
            device_session_apply(device_id=device.pk, status=state.session_status)
        device_status_apply(device_id=device.pk, status=state.status)


def devices_incident_sync() -> None:
    """A banned or unlinked number is an incident until Wassenger says otherwise; so is a
    device that has not reached Wassenger for minutes (its breaker), until a send goes out."""
    now = clock.now()
    for device in Device.objects.all():
        text = str(
            _("Number %(device)s cannot reach Wassenger: sending waits and retries.")
            % {"device": device.label}
        )
        incident_sync(
            kind="device_unreachable", key=str(device.pk), active=device.unreachable(now), summary=text
        )
        trouble = device_trouble(session_status=device.session_status, device_status=device.wassenger_status)
        for kind, summary in (
            (BANNED, _("Number %(device)s banned: nothing more is sent from it.")),
            (UNLINKED, _("Number %(device)s unlinked: scan the QR code again in Wassenger.")),
        ):
            text = str(summary % {"device": device.label})
            incident_sync(kind=f"number_{kind}", key=str(device.pk), active=trouble == kind, summary=text)


def alerts_for_device(row: DeviceFigures) -> None:
    """Quota level rising past attention, a halted device, too many failures: one incident each."""
    rank = LEVEL_ORDER.index(AlertLevel(row.level))
    for level in LEVEL_ORDER[1 : rank + 1]:
        incident_open(
            kind="quota_level",
            key=f"{row.device_id}:{row.day}:{level}",
            summary=f"Device {row.device}: {row.sends}/{row.limit} sends today, level {level}"
            + (f" (warm-up: its own limit is {row.own_limit})" if row.warming_up else ""),
        )
    if row.waits_for_midnight:
        incident_open(
            kind="quota_level",
            key=f"{row.device_id}:{row.day}:limit",
            summary=f"Device {row.device}: daily limit reached ({row.sends}/{row.limit}), "
            "sending waits for 00:00 UTC",
        )
    device = Device.objects.filter(pk=row.device_id).values("halted_at", "halted_reason").first()
    incident_sync(
        kind="device_halted",
        key=str(row.device_id),
        active=bool(device and device["halted_at"]),
        summary=f"Device {row.device} halted: {device and device['halted_reason']}",
    )
    attempts = row.message_1_sent + row.message_2_sent + row.test_sent + row.opt_out_confirmed + row.failed
    failing = (
        attempts >= settings.ALERT_FAILURE_MIN_ATTEMPTS
        and row.failed / attempts > settings.ALERT_FAILURE_RATE
    )
    incident_sync(
        kind="failure_rate",
        key=f"{row.device_id}:{row.day}",
        active=failing,
        summary=f"Device {row.device}: {row.failed} of {attempts} messages failed today",
    )


# Incidents that belong to one UTC day (their key holds it): they end with it.
DAY_INCIDENTS = ("quota_level", "failure_rate")


REPORT_CATCH_UP_DAYS = 7  # how far back an unreported day is still reported


def daily_rollover_run() -> bool:
    """Once a UTC day is over: close its incidents, and email its report, once.

    Scheduled every few minutes rather than daily, so that a cluster down at 00:00 UTC, a
    mail server refusing the report (kept only once it went out) or django-q shifting
    daily schedules with a local TIME_ZONE's summer time never loses a day: each run
    reports every day since the last report (a week back at most) that is not reported
    yet. True when it reported one.
    """
    today = clock.now().date()
    _day_incidents_close(before=today)
    reported = False
    for day in _days_unreported(today):
        outcome = _day_report(day)
        if outcome is None:  # the mail server refused: the next run tries again
            break
        reported |= outcome
    return reported


def _day_incidents_close(*, before) -> None:
    """Incidents of a finished UTC day end with it, whatever becomes of its report."""
    midnight = datetime.combine(before, time.min, tzinfo=UTC)
    for incident in Incident.objects.filter(kind__in=DAY_INCIDENTS, closed_at=None, opened_at__lt=midnight):
        incident_close(
            kind=incident.kind, key=incident.key, summary=f"New UTC day: {incident.summary} (closed)"
        )


def _days_unreported(today) -> list:
    yesterday = today - timedelta(days=1)
    last = DailyReport.objects.order_by("-day").values_list("day", flat=True).first()
    if last is None:  # a first start: nothing before yesterday to report
        return [yesterday]
    first = max(last + timedelta(days=1), yesterday - timedelta(days=REPORT_CATCH_UP_DAYS - 1))
    return [first + timedelta(days=n) for n in range((yesterday - first).days + 1)]


def _day_report(day) -> bool | None:
    """Report `day`: True if sent now, False if it already was, None if the mail failed."""
    figures = [row.as_dict() for row in daily_figures(day)]
    try:
        with transaction.atomic():
            DailyReport.objects.create(day=day, figures=figures, sent_at=clock.now())
            mail_admins(f"Daily report {day}", daily_report_text(day, figures))
    except IntegrityError:  # reported meanwhile (a second cluster)
        return False
    except Exception:
        logger.exception("daily report %s: could not be emailed, will try again", day)
        return None
    return True


def daily_report_text(day, figures: list[dict]) -> str:
    lines = [f"Relance — UTC day {day}", ""]
    for row in figures:
        lines.append(
            f"{row['device']}: {row['sends']}/{row['limit']} sends ({row['level']}); "
            f"Message 1 sent {row['message_1_sent']}, Message 2 sent {row['message_2_sent']}, "
            f"failed {row['failed']}, delivered {row['delivered']}, read {row['read']}, "
            f"replies {row['replies']}, opt-outs {row['opt_outs']} "
            f"(confirmed {row.get('opt_out_confirmed', 0)}), test sends {row.get('test_sent', 0)}"
        )
    return "\n".join(lines) or "No device."
