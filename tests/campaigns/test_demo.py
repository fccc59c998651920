"""`manage.py demo`: ready to launch, and running it twice duplicates nothing."""

from io import StringIO

import pytest
from django.core.management import call_command

from campaigns.demo import CAMPAIGN_NAME, DEVICE_LABEL
from campaigns.launch import launch_preview
from campaigns.models import Campaign, Category, Contact
from messaging.models import Device

pytestmark = pytest.mark.django_db


def counts():
    return (
        Device.objects.count(),
        Category.objects.count(),
        Contact.objects.count(),
        Campaign.objects.count(),
    )


def test_demo_creates_a_launchable_campaign_and_a_second_run_duplicates_nothing():
    out = StringIO()
    call_command("demo", stdout=out)
    first = counts()
    call_command("demo", stdout=StringIO())
    assert counts() == first
    preview = launch_preview(campaign=Campaign.objects.get(name=CAMPAIGN_NAME), sample=True)
    assert preview.refusals() == []
    assert preview.duplicates > 0 and preview.opted_out > 0 and preview.invalid > 0
    assert 250 <= preview.recipients < 300
    assert "Bonjour" in preview.sample.message_1 and "{{" not in preview.sample.message_1
    assert Device.objects.get(label=DEVICE_LABEL).gap_seconds == 2
    assert f"{preview.recipients} recipients" in out.getvalue()
