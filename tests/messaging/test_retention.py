"""Retention: webhook events, attempts and task results past RETENTION_DAYS are removed by the
cleanup job, in bounded batches; messages, replies and the daily figures stay."""

from datetime import timedelta

import pytest
from django_q.models import Task

from messaging.models import AttemptOutcome, Message, MessageAttempt, MessageStatus
from messaging.retention import retention_run
from messaging.tasks import cleanup
from monitoring.figures import daily_figures
from tests.factories import make_inbound, make_message
from webhooks.models import EventStatus, InboundMessage, WebhookEvent

pytestmark = pytest.mark.django_db


def _event(received_at, *, status=EventStatus.PROCESSED, key=None) -> WebhookEvent:
    key = key or f"message:out:ack|{received_at.isoformat()}|{WebhookEvent.objects.count()}"
    return WebhookEvent.objects.create(
        event="message:out:ack", dedup_key=key, payload={}, status=status, received_at=received_at
    )


def _attempt(message: Message, number: int, started_at) -> MessageAttempt:
    return MessageAttempt.objects.create(
        message=message, number=number, started_at=started_at, outcome=AttemptOutcome.ACCEPTED
    )


def _task(name: str, stopped) -> Task:
    return Task.objects.create(
        id=name, name=name, func="messaging.tasks.dispatch", started=stopped, stopped=stopped, success=False
    )


def _sent(now, **fields) -> Message:
    return make_message(status=MessageStatus.READ, sent_at=now, delivered_at=now, read_at=now, **fields)


def test_cleanup_removes_what_is_past_retention_and_keeps_the_rest(fake_clock, settings):
    settings.RETENTION_DAYS = 90
    now = fake_clock.now()
    old, recent = now - timedelta(days=91), now - timedelta(days=89)
    message = _sent(old)
    _attempt(message, 1, old)
    kept_attempt = _attempt(message, 2, recent)
    _event(old)
    kept_event = _event(recent)
    _task("old failure", now - timedelta(days=8))
    _task("recent failure", now - timedelta(days=6))

    report = cleanup()

    assert report["webhook_events_deleted"] == 1
    assert report["attempts_deleted"] == 1
    assert report["task_results_deleted"] == 1
    assert list(WebhookEvent.objects.values_list("pk", flat=True)) == [kept_event.pk]
    assert list(MessageAttempt.objects.values_list("pk", flat=True)) == [kept_attempt.pk]
    assert list(Task.objects.values_list("name", flat=True)) == ["recent failure"]
    assert Message.objects.filter(pk=message.pk).exists()


def test_a_reply_outlives_its_raw_event(fake_clock, settings):
    settings.RETENTION_DAYS = 90
    now = fake_clock.now()
    old = now - timedelta(days=120)
    message_1 = _sent(old)
    reply = make_inbound(message_1=message_1, text="Oui, rappelez-moi", written_at=old)
    WebhookEvent.objects.filter(pk=reply.event_id).update(received_at=old, status=EventStatus.PROCESSED)

    retention_run()

    reply.refresh_from_db()
    assert not WebhookEvent.objects.exists()
    assert reply.event_id is None
    assert (reply.text, reply.message_1_id, reply.campaign_id) == (
        "Oui, rappelez-moi",
        message_1.pk,
        message_1.campaign_id,
    )


def test_an_event_still_waiting_and_the_attempts_of_a_message_in_flight_are_kept(fake_clock):
    now = fake_clock.now()
    old = now - timedelta(days=200)
    waiting = _event(old, status=EventStatus.RECEIVED)
    unknown = make_message(status=MessageStatus.UNKNOWN, attempts=1)
    attempt = _attempt(unknown, 1, old)

    retention_run()

    assert WebhookEvent.objects.filter(pk=waiting.pk).exists()
    assert MessageAttempt.objects.filter(pk=attempt.pk).exists()


def test_a_backlog_goes_in_bounded_batches_over_several_runs(fake_clock, settings):
    settings.RETENTION_BATCH = 2
    old = fake_clock.now() - timedelta(days=365)
    for _ in range(5):
        _event(old)

    first = retention_run(budget_seconds=0)  # out of budget after one batch
    second = retention_run(budget_seconds=0)
    rest = retention_run()

    assert [first["webhook_events_deleted"], second["webhook_events_deleted"]] == [2, 2]
    assert rest["webhook_events_deleted"] == 1
    assert not WebhookEvent.objects.exists()


def test_the_daily_figures_of_an_old_day_stay_the_same_after_cleanup(fake_clock, settings):
    settings.RETENTION_DAYS = 90
    day = fake_clock.now() - timedelta(days=100)
    message = _sent(day, replied_at=day)
    _attempt(message, 1, day)
    _event(day)
    reply = make_inbound(message_1=message, written_at=day)
    WebhookEvent.objects.filter(pk=reply.event_id).update(received_at=day, status=EventStatus.PROCESSED)
    before = [row.as_dict() for row in daily_figures(day.date())]

    cleanup()

    assert not WebhookEvent.objects.exists() and not MessageAttempt.objects.exists()
    assert InboundMessage.objects.count() == 1
    assert [row.as_dict() for row in daily_figures(day.date())] == before
    assert before[0]["message_1_sent"] == 1 and before[0]["replies"] == 1
