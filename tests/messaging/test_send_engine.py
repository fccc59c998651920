"""The send engine through its real code: claims, outcomes, leases, reconciliation.

Wassenger is faked at the HTTP boundary (tests/fake_wassenger.py); time is the test clock.
"""

from collections import Counter
from datetime import timedelta

import pytest
import responses
from django.db import connection, transaction
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from campaigns.contacts import contact_opt_out
from campaigns.lifecycle import campaign_cancel
from campaigns.models import Campaign, CampaignStatus, Contact, WhatsAppStatus
from messaging import dispatch as dispatch_module
from messaging import wassenger
from messaging.claims import device_snapshot, message_claim
from messaging.devices import device_resume
from messaging.dispatch import ORPHANED_ATTEMPT, dispatch_run
from messaging.models import (
    CANCELLED_OPTED_OUT,
    CANCELLED_WITH_CAMPAIGN,
    AttemptOutcome,
    Device,
    DeviceDay,
    Message,
    MessageAttempt,
    MessageKind,
    MessageStatus,
)
from messaging.sending import (
    SenderExit,
    device_step,
    lease_acquire,
    message_record_outcome,
    sender_plan,
    sender_run,
)
from tests import fake_wassenger
from tests.factories import make_campaign, make_contact, make_device

pytestmark = pytest.mark.django_db


@pytest.fixture
def api():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield fake_wassenger.install(mock)


@pytest.fixture
def device():
    return make_device(gap_seconds=25, batch_size=25, batch_pause_seconds=300, daily_limit=1000)


def sending_campaign(device, contacts: int = 1, **fields):
    campaign = make_campaign(device=device, **fields)
    campaign.status = CampaignStatus.SENDING
    campaign.save()
    people = [make_contact() for _ in range(contacts)]
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO messaging_message"
            " (campaign_id, contact_id, device_id, kind, content, next_attempt_at)"
            " SELECT %s, id, %s, 'message_1', 'Bonjour', '2000-01-01'"
            " FROM campaigns_contact WHERE id = ANY(%s)",
            [campaign.pk, device.pk, [p.pk for p in people]],
        )
    return campaign


def only_message(campaign) -> Message:
    return Message.objects.get(campaign=campaign, kind=MessageKind.MESSAGE_1)


def test_a_sender_sends_every_due_message_once_with_the_gap_between_them(fake_clock, api, device):
    campaign = sending_campaign(device, contacts=5)
    assert sender_run(device_id=device.pk) == SenderExit.IDLE
    assert len(api.accepted) == 5 and len(set(api.phones())) == 5
    gaps = [(b.at - a.at).total_seconds() for a, b in zip(api.accepted, api.accepted[1:], strict=False)]
    assert gaps == [25.0] * 4
    statuses = set(Message.objects.filter(campaign=campaign).values_list("status", flat=True))
    assert statuses == {MessageStatus.SENT}
    assert not Message.objects.filter(campaign=campaign, sent_at__isnull=True).exists()


def test_message_2_is_claimed_before_older_message_1(fake_clock, api, device):
    campaign = sending_campaign(device, contacts=3)
    contact = Message.objects.filter(campaign=campaign).order_by("-id").first().contact
    Message.objects.create(
        campaign=campaign, contact=contact, device=device, kind=MessageKind.MESSAGE_2, content="Merci"
    )
    now = fake_clock.now()
    claimed = message_claim(
        device=device_snapshot(device.pk, now), kinds=(MessageKind.MESSAGE_2, MessageKind.MESSAGE_1), now=now
    )
    assert claimed.kind == MessageKind.MESSAGE_2


def test_a_full_batch_is_followed_by_the_pause_then_the_next_batch(fake_clock, api, device):
    sending_campaign(device, contacts=30)
    start = fake_clock.now()
    assert sender_run(device_id=device.pk) == SenderExit.IDLE
    assert len(api.accepted) == 30
    assert (api.accepted[25].at - api.accepted[24].at).total_seconds() == 300
    assert api.accepted[0].at == start


def test_a_second_sender_for_the_same_device_finds_the_lease_taken(fake_clock, api, device):
    sending_campaign(device, contacts=2)
    assert lease_acquire(device_id=device.pk, owner="other-worker")
    assert sender_run(device_id=device.pk) == SenderExit.LEASE_TAKEN
    assert api.accepted == []


def test_an_expired_lease_is_taken_over(fake_clock, api, device, settings):
    sending_campaign(device, contacts=1)
    assert lease_acquire(device_id=device.pk, owner="dead-worker")
    fake_clock.advance(settings.SENDER_LEASE_SECONDS + 1)
    assert sender_run(device_id=device.pk) == SenderExit.IDLE
    assert len(api.accepted) == 1


def test_the_daily_limit_stops_the_sender_until_utc_midnight(fake_clock, api, device, settings):
    settings.MESSAGE_2_RESERVE_SHARE = 0
    Device.objects.filter(pk=device.pk).update(daily_limit=3, gap_seconds=0)
    sending_campaign(device, contacts=5)
    assert sender_run(device_id=device.pk) == SenderExit.DAILY_LIMIT
    assert len(api.accepted) == 3
    assert DeviceDay.objects.get(device=device, day=fake_clock.now().date()).total == 3
    fake_clock.current = fake_clock.current.replace(hour=23, minute=59, second=59)
    assert sender_run(device_id=device.pk) == SenderExit.DAILY_LIMIT
    fake_clock.advance(1)
    assert sender_run(device_id=device.pk) == SenderExit.IDLE
    assert len(api.accepted) == 5


def test_message_1_leaves_the_reserve_to_message_2(fake_clock, api, device, settings):
    settings.MESSAGE_2_RESERVE_SHARE = 0.5
    Device.objects.filter(pk=device.pk).update(daily_limit=4, gap_seconds=0)
    campaign = sending_campaign(device, contacts=4)
    assert sender_run(device_id=device.pk) == SenderExit.DAILY_LIMIT
    assert len(api.accepted) == 2
    replied = Message.objects.filter(campaign=campaign, status=MessageStatus.SENT).first().contact
    Message.objects.create(
        campaign=campaign,
        contact=replied,
        device=device,
        kind=MessageKind.MESSAGE_2,
        content="Merci",
    )
    sender_run(device_id=device.pk)
    assert len(api.accepted) == 3
    assert api.accepted[-1].phone == replied.phone


def test_an_outage_costs_no_attempt_the_device_waits_longer_each_time_and_one_success_closes_it(
    fake_clock, api, device
):
    campaign = sending_campaign(device, contacts=2)
    api.script = ["501", "connection_refused", "501", "ok"]  # not a 500, which may have queued it
    start = fake_clock.now()
    assert sender_run(device_id=device.pk) == SenderExit.IDLE
    # One probe per wait (60, 120, 240 s), the same message each time, never another one.
    probes = [(r.at - start).total_seconds() for r in api.requests]
    assert probes == [0, 60, 180, 420, 445]
    assert len({r.phone for r in api.requests[:4]}) == 1
    message = Message.objects.get(campaign=campaign, contact__phone=api.requests[0].phone)
    assert (message.status, message.attempts) == (MessageStatus.SENT, 1)
    outcomes = list(MessageAttempt.objects.filter(message=message).values_list("outcome", flat=True))
    assert outcomes == ["transient"] * 3 + ["accepted"]
    device.refresh_from_db()
    assert (device.link_failures, device.link_down_since) == (0, None)
    assert DeviceDay.objects.get(device=device).total == 2


def test_a_rate_limit_makes_the_whole_device_wait_for_retry_after(fake_clock, api, device):
    campaign = sending_campaign(device, contacts=2)
    api.script = ["429:90"]
    start = fake_clock.now()
    assert sender_run(device_id=device.pk) == SenderExit.IDLE  # it sat out the wait
    assert api.accepted[0].at == start + timedelta(seconds=90)
    assert sorted(Message.objects.filter(campaign=campaign).values_list("status", "attempts")) == [
        (MessageStatus.SENT, 1),
        (MessageStatus.SENT, 1),
    ]


def test_an_invalid_number_fails_at_once_and_the_contact_is_marked_invalid(fake_clock, api, device):
    campaign = sending_campaign(device)
    api.script = ["invalid"]
    sender_run(device_id=device.pk)
    message = only_message(campaign)
    assert (message.status, message.attempts, api.requests_seen) == (MessageStatus.FAILED, 1, 1)
    assert message.contact.whatsapp_status == WhatsAppStatus.INVALID
    assert DeviceDay.objects.get(device=device).total == 0


def test_an_auth_error_halts_the_device_and_keeps_the_message(fake_clock, api, device):
    campaign = sending_campaign(device, contacts=2)
    api.script = ["401"]
    assert sender_run(device_id=device.pk) == SenderExit.HALTED
    device.refresh_from_db()
    assert device.halted_at == fake_clock.now() and "401" in device.halted_reason
    assert set(Message.objects.filter(campaign=campaign).values_list("status", "attempts")) == {
        (MessageStatus.PENDING, 0)
    }
    assert sender_plan(device_snapshot(device.pk, fake_clock.now()), fake_clock.now()) is not None
    assert sender_run(device_id=device.pk) == SenderExit.IDLE and api.requests_seen == 1  # a halted device


def test_after_an_auth_error_is_fixed_and_the_device_resumed_the_message_goes_out(fake_clock, api, device):
    campaign = sending_campaign(device)
    api.script = ["401"]
    assert sender_run(device_id=device.pk) == SenderExit.HALTED
    assert device_resume(device=Device.objects.get(pk=device.pk))
    fake_clock.advance(60)
    sender_run(device_id=device.pk)
    message = only_message(campaign)
    assert (message.status, message.attempts, len(api.accepted)) == (MessageStatus.SENT, 1, 1)
    attempts = MessageAttempt.objects.filter(message=message).values_list("number", "outcome")
    assert list(attempts) == [(1, "auth_error"), (2, "accepted")]


def test_an_unknown_outcome_is_reconciled_not_resent(fake_clock, api, device, settings):
    campaign = sending_campaign(device)
    api.script = ["timeout_accepted"]
    sender_run(device_id=device.pk)
    assert only_message(campaign).status == MessageStatus.UNKNOWN
    fake_clock.advance(settings.RECONCILE_AFTER_SECONDS)
    dispatch_run()
    message = only_message(campaign)
    assert (message.status, message.wassenger_id) == (MessageStatus.SENT, api.accepted[0].wassenger_id)
    assert len(api.accepted) == 1 and api.requests_seen == 1


def test_a_gateway_timeout_after_wassenger_took_the_message_is_reconciled_not_resent(
    fake_clock, api, device, settings
):
    campaign = sending_campaign(device)
    api.script = ["504_accepted"]
    sender_run(device_id=device.pk)
    assert only_message(campaign).status == MessageStatus.UNKNOWN
    fake_clock.advance(settings.RECONCILE_AFTER_SECONDS)
    dispatch_run()
    fake_clock.advance(3600)
    sender_run(device_id=device.pk)
    assert only_message(campaign).status == MessageStatus.SENT
    assert len(api.accepted) == 1


def test_a_lost_send_is_retried_only_after_wassenger_says_it_never_arrived(fake_clock, api, device, settings):
    campaign = sending_campaign(device)
    api.script = ["timeout_lost"]
    sender_run(device_id=device.pk)
    fake_clock.advance(settings.RECONCILE_AFTER_SECONDS)
    dispatch_run()
    message = only_message(campaign)
    assert message.status == MessageStatus.PENDING
    fake_clock.current = message.next_attempt_at
    sender_run(device_id=device.pk)
    assert only_message(campaign).status == MessageStatus.SENT
    assert len(api.accepted) == 1


def test_opting_out_while_a_send_is_in_doubt_means_it_is_never_sent(fake_clock, api, device, settings):
    campaign = sending_campaign(device)
    api.script = ["timeout_lost"]
    sender_run(device_id=device.pk)  # unknown: the opt-out below finds nothing pending
    assert contact_opt_out(contact=only_message(campaign).contact) == 0  # none pending
    fake_clock.advance(settings.RECONCILE_AFTER_SECONDS)
    report = dispatch_run()  # Wassenger never got it: due again, then cancelled as opted out
    assert report["reconciled"] == 1 and report["no_longer_wanted"] == 1
    message = only_message(campaign)
    assert (message.status, message.last_error) == (MessageStatus.CANCELLED, CANCELLED_OPTED_OUT)
    fake_clock.advance(3600)
    sender_run(device_id=device.pk)
    assert api.accepted == []


def test_a_send_in_flight_when_its_campaign_is_cancelled_is_not_retried_after_a_failure(
    fake_clock, api, device
):
    campaign = sending_campaign(device)
    now = fake_clock.now()
    claim = message_claim(device=device_snapshot(device.pk, now), kinds=(MessageKind.MESSAGE_1,), now=now)
    campaign_cancel(campaign=campaign)  # while the send is in flight: nothing pending to cancel
    failure = wassenger.Transient("Internal error", status=500)
    message_record_outcome(claim=claim, result=None, error=failure)  # back to pending, for a retry
    assert only_message(campaign).status == MessageStatus.PENDING
    assert dispatch_run()["no_longer_wanted"] == 1
    message = only_message(campaign)
    assert (message.status, message.last_error) == (MessageStatus.CANCELLED, CANCELLED_WITH_CAMPAIGN)


def test_the_sender_never_claims_a_message_to_a_contact_who_opted_out(fake_clock, api, device):
    campaign = sending_campaign(device, contacts=2)
    first, second = Message.objects.filter(campaign=campaign).order_by("pk")
    Contact.objects.filter(pk=first.contact_id).update(opted_out_at=fake_clock.now())  # say, in the admin
    now = fake_clock.now()
    claim = message_claim(device=device_snapshot(device.pk, now), kinds=(MessageKind.MESSAGE_1,), now=now)
    assert claim.message_id == second.pk


def test_a_sender_killed_after_its_claim_never_causes_a_second_send(fake_clock, api, device, settings):
    campaign = sending_campaign(device)
    # A worker claims the message, calls Wassenger, and dies before recording anything.
    assert lease_acquire(device_id=device.pk, owner="doomed")
    now = fake_clock.now()
    claim = message_claim(device=device_snapshot(device.pk, now), kinds=(MessageKind.MESSAGE_1,), now=now)
    api._accept({"phone": claim.phone, "reference": claim.reference})
    fake_clock.advance(settings.SENDER_LEASE_SECONDS + 1)
    dispatch_run()  # the lease lapses: the row becomes unknown
    dispatch_run()  # reconciliation finds it at Wassenger
    assert only_message(campaign).status == MessageStatus.SENT
    assert sender_run(device_id=device.pk) == SenderExit.IDLE
    assert len(api.accepted) == 1


def test_a_send_cut_short_by_a_dead_worker_is_settled_even_while_a_successor_holds_the_lease(
    fake_clock, api, device, settings
):
    campaign = sending_campaign(device, contacts=2)
    assert lease_acquire(device_id=device.pk, owner="doomed")
    now = fake_clock.now()
    orphan = message_claim(device=device_snapshot(device.pk, now), kinds=(MessageKind.MESSAGE_1,), now=now)
    fake_clock.advance(settings.SENDER_LEASE_SECONDS + 1)
    assert lease_acquire(device_id=device.pk, owner="successor")  # woken by a reply, busy sending
    report = dispatch_run()
    assert (report["orphans"], report["reconciled"]) == (1, 1)
    (attempt,) = MessageAttempt.objects.filter(message_id=orphan.message_id)
    assert (attempt.outcome, attempt.error) == (AttemptOutcome.UNKNOWN, ORPHANED_ATTEMPT)
    # Wassenger never got it: due again, for the successor to send.
    assert Message.objects.get(pk=orphan.message_id).status == MessageStatus.PENDING
    assert not Message.objects.filter(campaign=campaign, status=MessageStatus.SENDING).exists()


def test_a_send_cut_short_by_a_dead_worker_is_closed_as_unknown_not_left_in_flight(
    fake_clock, api, device, settings
):
    """Regression: the attempt of a sender killed mid-send stayed "in flight" for ever."""
    campaign = sending_campaign(device)
    assert lease_acquire(device_id=device.pk, owner="doomed")
    now = fake_clock.now()
    message_claim(device=device_snapshot(device.pk, now), kinds=(MessageKind.MESSAGE_1,), now=now)
    fake_clock.advance(settings.SENDER_LEASE_SECONDS + 1)
    dispatch_run()
    (attempt,) = MessageAttempt.objects.filter(message=only_message(campaign))
    assert (attempt.outcome, attempt.finished_at) == (AttemptOutcome.UNKNOWN, fake_clock.now())
    assert attempt.error == ORPHANED_ATTEMPT


def test_paused_and_draft_campaigns_are_not_sent(fake_clock, api, device):
    campaign = sending_campaign(device)
    campaign.transition_to(CampaignStatus.PAUSED)
    campaign.save()
    assert sender_run(device_id=device.pk) == SenderExit.IDLE
    assert api.accepted == []


def test_a_campaign_completes_once_everything_is_final_and_the_reply_window_closed(
    fake_clock, api, device, settings
):
    campaign = sending_campaign(device)
    sender_run(device_id=device.pk)
    assert dispatch_run()["campaigns_completed"] == 0
    fake_clock.advance(settings.REPLY_WINDOW_HOURS * 3600 + 1)
    assert dispatch_run()["campaigns_completed"] == 0  # late-delivered replies may still come
    fake_clock.advance(settings.CAMPAIGN_COMPLETION_GRACE_SECONDS)
    assert dispatch_run()["campaigns_completed"] == 1
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.COMPLETED


def test_a_scheduled_campaign_starts_when_its_time_comes(fake_clock, api, device):
    campaign = sending_campaign(device)
    campaign.status, campaign.starts_at = CampaignStatus.SCHEDULED, fake_clock.now() + timedelta(hours=1)
    campaign.save()
    assert dispatch_run()["campaigns_started"] == 0
    fake_clock.advance(3600)
    assert dispatch_run()["campaigns_started"] == 1
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENDING


@given(
    kinds=st.lists(st.sampled_from([MessageKind.MESSAGE_1, MessageKind.MESSAGE_2]), min_size=1, max_size=12)
)
@hypothesis_settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_claims_never_pass_the_daily_limit_or_the_reserve_whatever_the_order(fake_clock, kinds):
    """Two claimers racing on stale snapshots: the database guard alone keeps the quota."""
    with transaction.atomic():
        device = make_device(daily_limit=4, gap_seconds=0)
        campaign = sending_campaign(device, contacts=0)
        for kind in kinds:
            Message.objects.create(
                campaign=campaign,
                contact=make_contact(),
                device=device,
                kind=kind,
                content="x",
                next_attempt_at=fake_clock.now(),
            )
        now = fake_clock.now()
        stale = [device_snapshot(device.pk, now), device_snapshot(device.pk, now)]
        claims = [
            message_claim(device=stale[i % 2], kinds=tuple(MessageKind.values), now=now)
            for i in range(len(kinds))
        ]
        taken = Counter(c.kind for c in claims if c is not None)
        wanted = Counter(kinds)
        # Message 2 goes first and may use the whole limit; Message 1 leaves ceil(10% × 4) = 1.
        expected_2 = min(wanted["message_2"], 4)
        expected_1 = min(wanted["message_1"], 3, 4 - expected_2)
        assert (taken["message_1"], taken["message_2"]) == (expected_1, expected_2)
        day = DeviceDay.objects.get(device=device)
        assert (day.message_1_count, day.message_2_count) == (expected_1, expected_2)
        transaction.set_rollback(True)


def test_a_lost_send_of_a_cancelled_campaign_is_cancelled_not_retried(fake_clock, api, device, settings):
    campaign = sending_campaign(device)
    api.script = ["timeout_lost"]
    sender_run(device_id=device.pk)
    Campaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.CANCELLED)
    fake_clock.advance(settings.RECONCILE_AFTER_SECONDS)
    dispatch_run()
    assert only_message(campaign).status == MessageStatus.CANCELLED
    assert api.accepted == []


def _statements_of_a_run(device_id: int) -> list[str]:
    statements = []

    def count(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        assert sender_run(device_id=device_id) == SenderExit.IDLE
    return statements


def test_with_no_gap_one_statement_a_message_records_each_send_and_claims_the_next(fake_clock, api):
    small, large = make_device(gap_seconds=0), make_device(gap_seconds=0)
    sending_campaign(small, contacts=3)
    campaign = sending_campaign(large, contacts=11)
    extra = len(_statements_of_a_run(large.pk)) - len(_statements_of_a_run(small.pk))
    assert extra == 8  # what one more message costs: one statement, whatever the batch
    assert len(api.accepted) == 14 and len(set(api.phones())) == 14
    attempts = MessageAttempt.objects.filter(message__campaign=campaign).values_list("number", "outcome")
    assert sorted(attempts) == [(1, AttemptOutcome.ACCEPTED)] * 11
    assert set(Message.objects.filter(campaign=campaign).values_list("status", flat=True)) == {"sent"}
    with connection.cursor() as cursor:  # prepared once per connection, then reused
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [" ".join(statement.split()[:3]) for (statement,) in cursor.fetchall()]
    assert {"WITH next AS", "WITH settled AS"} <= set(prepared)


def test_with_no_gap_a_failed_send_is_recorded_alone_and_the_rest_still_go_once(fake_clock, api):
    device = make_device(gap_seconds=0)
    campaign = sending_campaign(device, contacts=4)
    api.script = ["ok", "501", "ok", "timeout_lost"]
    assert sender_run(device_id=device.pk) == SenderExit.IDLE
    # The 501 made the device wait a minute, then its message went first; the lost one waits
    # for reconciliation, after the device's wait.
    assert len(api.accepted) == 3 and api.requests_seen == 5
    statuses = Counter(Message.objects.filter(campaign=campaign).values_list("status", flat=True))
    assert statuses == {MessageStatus.SENT: 3, MessageStatus.UNKNOWN: 1}
    attempts = Counter(
        MessageAttempt.objects.filter(message__campaign=campaign).values_list("outcome", flat=True)
    )
    assert attempts == {AttemptOutcome.ACCEPTED: 3, AttemptOutcome.TRANSIENT: 1, AttemptOutcome.UNKNOWN: 1}
    assert (
        DeviceDay.objects.get(device=device, day=fake_clock.now().date()).total == 4
    )  # the 501 gave its slot back


def test_the_claim_riding_on_an_outcome_takes_a_waiting_message_2_first(fake_clock, api):
    device = make_device(gap_seconds=0)
    campaign = sending_campaign(device, contacts=3)
    now = fake_clock.now()
    snapshot = device_snapshot(device.pk, now)
    first = message_claim(device=snapshot, kinds=(MessageKind.MESSAGE_1,), now=now)
    replied = Message.objects.create(
        campaign=campaign, contact=make_contact(), device=device, kind=MessageKind.MESSAGE_2, content="Merci"
    )
    snapshot.message_2_due = True
    accepted = wassenger.SendResult(wassenger_id="w1", whatsapp_id="", status="queued", raw={})
    second = message_record_outcome(claim=first, result=accepted, error=None, then_claim_for=snapshot)
    assert second.message_id == replied.pk
    assert only_message_status(first.message_id) == MessageStatus.SENT
    assert only_message_status(second.message_id) == MessageStatus.SENDING
    assert DeviceDay.objects.get(device=device, day=now.date()).total == 2


def test_no_claim_rides_on_an_outcome_while_the_gap_runs(fake_clock, api, device):
    sending_campaign(device, contacts=2)
    now = fake_clock.now()
    snapshot = device_snapshot(device.pk, now)
    first = message_claim(device=snapshot, kinds=(MessageKind.MESSAGE_1,), now=now)
    accepted = wassenger.SendResult(wassenger_id="w1", whatsapp_id="", status="queued", raw={})
    assert message_record_outcome(claim=first, result=accepted, error=None, then_claim_for=snapshot) is None
    assert Message.objects.filter(status=MessageStatus.SENDING).count() == 0


def only_message_status(message_id: int) -> str:
    return Message.objects.values_list("status", flat=True).get(pk=message_id)


# --- Errors of a send (issue 18): what Wassenger's answer means for the message -----------------


@pytest.mark.parametrize("fault", ["500_accepted", "409_accepted"])
def test_a_500_or_409_after_wassenger_queued_the_message_is_looked_up_not_resent(
    fake_clock, api, device, settings, fault
):
    message = reconcile_after_lost_answer(fake_clock, api, device, settings, fault=fault)
    fake_clock.advance(3600)
    sender_run(device_id=device.pk)
    message.refresh_from_db()
    assert (message.status, message.wassenger_id) == (MessageStatus.SENT, api.accepted[0].wassenger_id)
    assert message.sent_at == api.accepted[0].at  # Wassenger's createdAt, not the time of the lookup
    assert len(api.accepted) == 1 and api.requests_seen == 1


@pytest.mark.parametrize("fault", ["500", "409"])
def test_a_500_or_409_with_nothing_queued_is_resent_only_after_the_lookup(
    fake_clock, api, device, settings, fault
):
    message = reconcile_after_lost_answer(fake_clock, api, device, settings, fault=fault)
    assert message.status == MessageStatus.PENDING and api.requests_seen == 1
    fake_clock.current = message.next_attempt_at
    sender_run(device_id=device.pk)
    message.refresh_from_db()
    assert message.status == MessageStatus.SENT and len(api.accepted) == 1


@pytest.mark.parametrize("fault", ["device_404", "queue_freeze"])
def test_a_refusal_of_the_device_halts_it_and_fails_no_message(fake_clock, api, device, fault):
    campaign = sending_campaign(device, contacts=3)
    api.script = [fault]
    assert sender_run(device_id=device.pk) == SenderExit.HALTED
    device.refresh_from_db()
    assert device.halted_at == fake_clock.now()
    assert device.halted_reason.startswith("Wassenger refuses messages from this number")
    assert api.requests_seen == 1  # not one campaign message failed after another
    assert set(Message.objects.filter(campaign=campaign).values_list("status", "attempts")) == {
        (MessageStatus.PENDING, 0)
    }
    assert DeviceDay.objects.get(device=device).total == 0
    assert device_resume(device=device)
    fake_clock.advance(60)
    sender_run(device_id=device.pk)
    assert sorted(api.phones()) == sorted(Message.objects.values_list("contact__phone", flat=True))


def test_the_halt_reason_of_a_refused_device_is_in_french_for_a_french_operator(fake_clock, api, device):
    from django.utils import translation

    sending_campaign(device)
    api.script = ["device_404"]
    with translation.override("fr"):
        sender_run(device_id=device.pk)
    device.refresh_from_db()
    assert device.halted_reason.startswith("Wassenger refuse les messages de ce numéro")


def reconcile_after_lost_answer(fake_clock, api, device, settings, fault="timeout_accepted", **verdict):
    """A send answered by `fault` (the answer lost, by default); Wassenger then reports
    `verdict` on the message; reconciliation runs."""
    campaign = sending_campaign(device)
    api.script = [fault]
    sender_run(device_id=device.pk)
    assert only_message(campaign).status == MessageStatus.UNKNOWN  # not pending: no re-send yet
    for name, value in verdict.items():
        setattr(api.accepted[0], name, value)
    fake_clock.advance(settings.RECONCILE_AFTER_SECONDS)
    dispatch_run()
    return only_message(campaign)


@pytest.mark.parametrize("status", ["failed", "invalid", "expired", "removed"])
def test_a_message_wassenger_reports_failed_is_failed_with_its_reason(
    fake_clock, api, device, settings, status
):
    message = reconcile_after_lost_answer(
        fake_clock, api, device, settings, status=status, failure_reason="max retries exceeded"
    )
    assert message.status == MessageStatus.FAILED
    assert message.last_error == "Wassenger: max retries exceeded"
    assert message.contact.whatsapp_status != WhatsAppStatus.INVALID  # the message's failure only
    fake_clock.advance(3600)
    sender_run(device_id=device.pk)
    assert api.requests_seen == 1  # believed: never sent again


def test_a_failure_for_a_number_not_on_whatsapp_marks_the_contact(fake_clock, api, device, settings):
    message = reconcile_after_lost_answer(
        fake_clock, api, device, settings, status="failed", failure_reason="number:notfound"
    )
    assert message.status == MessageStatus.FAILED
    assert message.contact.whatsapp_status == WhatsAppStatus.INVALID


def test_an_expired_message_gives_its_quota_slot_back_a_failed_one_keeps_it(
    fake_clock, api, device, settings
):
    reconcile_after_lost_answer(fake_clock, api, device, settings, status="expired")
    assert DeviceDay.objects.get(device=device).total == 0


@pytest.mark.parametrize(
    "delivery_status, expected",
    [
        ("queued", MessageStatus.SENT),
        ("processing", MessageStatus.SENT),
        ("delivered", MessageStatus.DELIVERED),
        ("readed", MessageStatus.READ),
    ],
)
def test_a_found_message_takes_the_status_wassenger_gives_at_wassengers_time(
    fake_clock, api, device, settings, delivery_status, expected
):
    message = reconcile_after_lost_answer(fake_clock, api, device, settings, delivery_status=delivery_status)
    assert message.status == expected
    assert message.sent_at == api.accepted[0].at  # createdAt, not the lookup 30 s later
    assert message.read_at == (api.accepted[0].at if expected == MessageStatus.READ else None)


def test_every_settled_message_gets_its_log_line(fake_clock, api, device, settings, caplog):
    caplog.set_level("INFO", logger="messaging.sending")
    message = reconcile_after_lost_answer(fake_clock, api, device, settings, status="failed")
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("reconciled")]
    assert f"campaign={message.campaign_id} contact={message.contact_id}" in line
    assert "unknown → failed" in line and message.contact.phone not in line


# --- The device circuit breaker (issue 19) -------------------------------------------------------


def step_until_requests(fake_clock, api, device, requests: int) -> None:
    """Serve the device slot after slot (the loop's work, without the loop) until Wassenger
    has seen `requests` send requests."""
    while True:
        step = device_step(device_id=device.pk, owner=None)
        if api.requests_seen >= requests:
            return
        assert step.exit is None
        fake_clock.current = max(fake_clock.current, step.at)


UNREACHABLE = "a device cannot reach Wassenger"


def test_a_device_unreachable_for_5_minutes_is_an_incident_on_the_dashboard_and_health_until_it_recovers(
    fake_clock, api, device, mailoutbox, settings
):
    from monitoring.checks import devices_incident_sync

    settings.ADMINS = [("Ops", "ops@example.com")]
    from monitoring.dashboard import number_banners
    from monitoring.health import health_report

    sending_campaign(device, contacts=3)
    api.script = ["connection_refused"] * 4
    step_until_requests(fake_clock, api, device, 3)  # 0, 60, 180 s: not five minutes yet
    devices_incident_sync()
    assert UNREACHABLE not in health_report()["reasons"] and mailoutbox == []
    step_until_requests(fake_clock, api, device, 4)  # 420 s
    devices_incident_sync()
    devices_incident_sync()  # checked again: still one incident, one email
    report = health_report()
    assert UNREACHABLE in report["reasons"]
    (row,) = [d for d in report["checks"]["devices"]["devices"] if d["id"] == device.pk]
    assert row["unreachable_since"] == fake_clock.now() - timedelta(seconds=420)
    assert number_banners() == [f"Number {device.label} cannot reach Wassenger: sending waits and retries."]
    assert len(mailoutbox) == 1
    step_until_requests(fake_clock, api, device, 5)  # Wassenger answers again
    devices_incident_sync()
    assert UNREACHABLE not in health_report()["reasons"] and number_banners() == [] and len(mailoutbox) == 2
    assert set(Message.objects.values_list("status", "attempts")) == {
        (MessageStatus.SENT, 1),
        (MessageStatus.PENDING, 0),
    }


def test_while_the_device_waits_no_other_message_is_claimed_and_reconciliation_refunds_a_lost_attempt(
    fake_clock, api, device, settings
):
    campaign = sending_campaign(device, contacts=3)
    api.script = ["timeout_lost", "timeout_lost", "timeout_lost", "timeout_lost"]
    for sent in range(1, 5):  # a timeout is a sign about the link too: the device waits
        step_until_requests(fake_clock, api, device, sent)
        fake_clock.advance(settings.RECONCILE_AFTER_SECONDS)
        dispatch_run()  # not found at Wassenger: back in its place, its attempt given back
    assert len({r.phone for r in api.requests}) == 1  # one message probed, the others untouched
    assert sender_run(device_id=device.pk) == SenderExit.IDLE
    assert set(Message.objects.filter(campaign=campaign).values_list("status", "attempts")) == {
        (MessageStatus.SENT, 1)
    }


def test_saving_a_device_in_the_admin_keeps_the_columns_the_sender_wrote_meanwhile(admin_client, fake_clock):
    device = make_device(gap_seconds=25)
    url = f"/admin/messaging/device/{device.pk}/change/"
    form = admin_client.get(url).context["adminform"].form
    # While the operator reads the page, the sender sends, pauses and holds the lease.
    sender_columns = {
        "last_sent_at": fake_clock.now(),
        "sent_in_batch": 7,
        "paused_until": fake_clock.now() + timedelta(seconds=300),
        "next_gap_seconds": 31.5,
        "batch_target": 22,
        "lease_owner": "a-loop",
        "lease_expires_at": fake_clock.now() + timedelta(seconds=120),
        "link_failures": 2,
        "link_down_since": fake_clock.now(),
    }
    assert set(sender_columns) == set(Device.SENDER_FIELDS)
    Device.objects.filter(pk=device.pk).update(
        **sender_columns, halted_at=fake_clock.now(), halted_reason="x"
    )
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    data |= {"label": "Renamed", "is_default": "", "_save": "Save"}
    assert admin_client.post(url, data).status_code == 302
    device.refresh_from_db()
    assert device.label == "Renamed"
    assert {name: getattr(device, name) for name in sender_columns} == sender_columns


# --- The dispatcher's budget (issue 19) -----------------------------------------------------------


def unknown_sends(fake_clock, api, device, settings, count: int) -> list[Message]:
    campaign = sending_campaign(device, contacts=count)
    Message.objects.filter(campaign=campaign).update(
        status=MessageStatus.UNKNOWN, next_attempt_at=fake_clock.now(), attempts=1
    )
    return list(Message.objects.filter(campaign=campaign).order_by("pk"))


def test_one_bad_row_is_logged_and_skipped_and_never_breaks_the_tick(
    fake_clock, api, device, settings, monkeypatch, caplog
):
    bad, *good = unknown_sends(fake_clock, api, device, settings, 4)
    real = dispatch_module.message_reconcile

    def reconcile(message, **options):
        if message.pk == bad.pk:
            raise RuntimeError("a row the code did not foresee")
        return real(message, **options)

    monkeypatch.setattr(dispatch_module, "message_reconcile", reconcile)
    monkeypatch.setattr(dispatch_module.lifecycle, "campaigns_start_due", lambda: 1 / 0)
    report = dispatch_run()
    assert report["reconciled"] == 3 and report["campaigns_started"] == 0  # the others ran
    assert {m.status for m in Message.objects.filter(pk__in=[m.pk for m in good])} == {MessageStatus.PENDING}
    assert Message.objects.get(pk=bad.pk).status == MessageStatus.UNKNOWN  # looked at again later
    logged = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert f"reconciling message {bad.pk} failed; skipped until the next tick" in logged
    assert "dispatch: campaigns_started failed; the next tick tries again" in logged


def test_reconciliation_stays_within_the_ticks_budget_when_wassenger_is_slow(
    fake_clock, api, device, settings, monkeypatch
):
    import time as real_time

    unknown_sends(fake_clock, api, device, settings, 6)
    settings.DISPATCH_BUDGET_SECONDS, settings.RECONCILE_SLICE = 0.5, 100
    timeouts = []

    def slow_lookup(reference, *, timeout=None):
        timeouts.append(timeout)
        real_time.sleep(0.2)
        raise wassenger.OutcomeUnknown("no answer")

    monkeypatch.setattr(wassenger, "find_message_by_reference", slow_lookup)
    started = real_time.monotonic()
    dispatch_run()
    assert real_time.monotonic() - started < 1.0 and len(timeouts) == 3  # the rest next tick
    assert set(timeouts) == {settings.RECONCILE_LOOKUP_TIMEOUT}  # each lookup with a short timeout
    settings.RECONCILE_SLICE = 2
    dispatch_run()
    assert len(timeouts) == 5  # a bounded slice a tick
