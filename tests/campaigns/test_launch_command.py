"""`manage.py launch_campaign`: the same checks as the admin, and an exit code scripts can use."""

import pytest

from campaigns.models import CampaignStatus
from messaging.models import DeviceDay, Message
from tests.factories import make_campaign, make_category, make_contact, make_device

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(manage):
    return lambda *arguments: manage("launch_campaign", *arguments)


def campaign_for(contacts: int, **fields):
    category = make_category()
    for _ in range(contacts):
        make_contact(categories=[category])
    return make_campaign(categories=[category], **fields)


def test_a_launchable_campaign_is_launched_and_exits_0(run, fake_clock):
    campaign = campaign_for(2)
    code, out, _ = run(campaign.pk)
    assert code == 0
    assert "Recipients: 2" in out and "Estimated finish: 2026-03-29 09:00 UTC (1 UTC days)" in out
    assert f"Campaign {campaign.pk} is sending: 2 Message 1 queued." in out
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENDING


def test_an_unknown_campaign_exits_1_and_bad_arguments_exit_2(run):
    code, _, err = run(987654)
    assert (code, err.strip()) == (1, "CommandError: No campaign with id 987654.")
    assert run("not-a-number")[0] == 2


def test_a_refused_launch_exits_3_with_the_reason(run, fake_clock):
    campaign = campaign_for(1)
    assert run(campaign.pk)[0] == 0
    code, _, err = run(campaign.pk)
    assert code == 3
    assert "was already launched: it is sending." in err


def test_a_quota_refusal_exits_4_until_several_days_are_accepted(run, fake_clock, settings):
    settings.MESSAGE_2_RESERVE_SHARE = 0.1
    device = make_device(daily_limit=10)
    DeviceDay.objects.create(device=device, day=fake_clock.now().date(), message_1_count=4)
    campaign = campaign_for(7, device=device)
    code, _, err = run(campaign.pk)
    assert code == 4 and "It needs 2 days" in err
    assert not Message.objects.exists()
    assert run(campaign.pk, "--allow-multi-day")[0] == 0
    assert Message.objects.filter(campaign=campaign).count() == 7


def test_a_dry_run_reports_and_changes_nothing(run, fake_clock):
    campaign = campaign_for(3, message_1_text="Bonjour {{ first_name }}")
    code, out, _ = run(campaign.pk, "--dry-run")
    assert code == 0
    assert "Recipients: 3" in out and "Message 1 for Camille (+33" in out
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.DRAFT
    assert not Message.objects.exists()
