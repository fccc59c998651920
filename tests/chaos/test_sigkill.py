"""Scenario 1: the senders' cluster is SIGKILLed three times during a 600-message campaign.

Launched for real over three overlapping categories (with opted-out and invalid
contacts), sent by a real senders' cluster through the sandbox, killed mid-send at 150,
300 and 450 accepted messages and restarted: every eligible contact ends with exactly one
Message 1 in the sandbox's record (none twice, none skipped), the day's counter equals
what was accepted, and the campaign completes. Each kill lands while a send hangs after
the sandbox took it: the answer dies with the worker, and only reconciliation by
reference can tell that the message went out.
"""

from collections import Counter

import pytest

from campaigns.launch import campaign_launch
from campaigns.models import Campaign, CampaignStatus
from messaging.models import AttemptOutcome, Message, MessageAttempt, MessageStatus
from tests.chaos.conftest import (
    accepted_by_phone,
    assert_counters_match_accepted_sends,
    contacts_in_overlapping_categories,
    eligible_phones,
)
from tests.clusters import SenderCluster, run_until_settled, settings_shrink
from tests.factories import make_campaign, make_device
from tests.messaging.conftest import SANDBOX_TOKEN, start_sandbox

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ELIGIBLE = 600
KILL_AT = (150, 300, 450)


@pytest.fixture
def sandbox(settings):
    server = start_sandbox("--webhook-url", "", "--seed", "1")
    settings.WASSENGER_API_URL, settings.WASSENGER_API_TOKEN = f"{server.url}/v1", SANDBOX_TOKEN
    yield server
    server.stop()


def launched_campaign() -> Campaign:
    categories = contacts_in_overlapping_categories(eligible=ELIGIBLE, opted_out=15, invalid=15, prefix="61")
    device = make_device(gap_seconds=0.02, batch_size=25, batch_pause_seconds=0.2)
    campaign = make_campaign(device=device, categories=categories, message_1_text="Bonjour {{ first_name }}")
    assert campaign_launch(campaign=campaign).messages_created == ELIGIBLE
    return campaign


def test_three_sigkills_during_a_600_message_campaign_lose_nothing_and_double_nothing(sandbox, settings):
    env = settings_shrink(settings)
    settings.REPLY_WINDOW_HOURS = 1 / 3600  # the campaign completes once its windows close
    settings.CAMPAIGN_COMPLETION_GRACE_SECONDS = 0
    campaign = launched_campaign()
    cluster = SenderCluster(sandbox.url, **env)
    cluster.start()
    try:
        run_until_settled(
            sandbox,
            cluster,
            kill_at=KILL_AT,
            settled=lambda: Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.COMPLETED,
        )
    finally:
        cluster.kill()
    assert accepted_by_phone(sandbox) == dict.fromkeys(eligible_phones(campaign), 1)
    statuses = set(Message.objects.filter(campaign=campaign).values_list("status", flat=True))
    assert statuses == {MessageStatus.SENT}
    assert_counters_match_accepted_sends()
    # Each kill cut a send short: its attempt is closed as unknown, never left "in flight".
    outcomes = Counter(MessageAttempt.objects.values_list("outcome", flat=True))
    kills = len(KILL_AT)
    assert outcomes == {AttemptOutcome.ACCEPTED: ELIGIBLE - kills, AttemptOutcome.UNKNOWN: kills}
