"""Launching a 100,000-contact audience vs. the legacy per-contact ORM loop, per recipient.

100,000 contacts in 3 overlapping categories (about 60,000 distinct eligible recipients
after overlaps, opt-outs and invalid numbers), seeded with set-based SQL. Ours:
`campaign_launch` in a child process of its own, which reports the launch's wall time and
its peak RSS (`resource.getrusage`, Django included). Baseline, in the same run: the legacy
approach on 2,000 contacts, a Python loop that checks, renders and creates each Message 1
through the ORM. Both are Message 1s created per second. Goals: ratio >= 100, RSS < 150 MB.

    python bench/launch.py [--contacts 100000] [--baseline-contacts 2000]
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness

RSS_GOAL_MB = 150
TEXT = "Bonjour {{ first_name }}, des nouvelles de {{ city }} ?"
FALLBACKS = {"first_name": "à vous", "city": "votre ville"}

# Contact n: category A if n % 2 = 0, B if n % 5 = 0, C if n % 7 = 0 (65.7% in at least one,
# with overlaps); 3% opted out, 5% invalid, 5% without a first name, a third without a city.
_SEED_CONTACTS = """
INSERT INTO campaigns_contact
  (phone, name, first_name, fields, opted_out_at, whatsapp_status, created_at, updated_at)
SELECT '+336' || lpad(n::text, 8, '0'), 'Nom ' || n,
  CASE WHEN n %% 20 = 0 THEN '' ELSE 'Prénom' || n END,
  jsonb_build_object('city', CASE WHEN n %% 3 = 0 THEN '' ELSE 'Ville ' || n %% 100 END),
  CASE WHEN n %% 31 = 4 THEN now() END,
  CASE WHEN n %% 19 = 6 THEN 'invalid' ELSE 'unknown' END,
  now(), now()
FROM generate_series(1, %(contacts)s) AS n
"""
_SEED_MEMBERSHIPS = """
INSERT INTO campaigns_contact_categories (contact_id, category_id)
SELECT c.id, k.id FROM campaigns_contact c
JOIN campaigns_category k ON
  (k.name = 'A' AND substr(c.phone, 5)::int %% 2 = 0)
  OR (k.name = 'B' AND substr(c.phone, 5)::int %% 5 = 0)
  OR (k.name = 'C' AND substr(c.phone, 5)::int %% 7 = 0)
  OR (k.name = 'baseline' AND substr(c.phone, 5)::int <= %(baseline)s)
"""


def main() -> None:
    options = _arguments()
    if options.child:
        _child(options.child)
        return
    with harness.scratch_django("launch", LOG_LEVEL="WARNING"):
        seed_seconds = _seed(options.contacts, options.baseline_contacts)
        ours = _launch_in_child(_campaign(["A", "B", "C"]))
        baseline_created, baseline_seconds = _legacy_launch(_campaign(["baseline"]))
        checks = _check(ours["campaign"])
    harness.report(
        name="launch",
        unit="contacts/s",
        value=ours["created"] / ours["seconds"],
        baseline=baseline_created / baseline_seconds,
        goal=100,
        measured=f"contacts/s (one Message 1 each) of a launch over {options.contacts:,} contacts in 3 "
        f"overlapping categories ({ours['created']:,} eligible)",
        baseline_is=f"the legacy per-contact ORM loop on {options.baseline_contacts:,} contacts",
        also={
            f"peak RSS < {RSS_GOAL_MB} MB ({ours['peak_rss_mb']:.0f} MB)": ours["peak_rss_mb"] < RSS_GOAL_MB,
            "one Message 1 per eligible contact, rendered right": checks["one_per_eligible_contact"]
            and checks["rendering_matches"],
        },
        contacts=options.contacts,
        eligible=ours["created"],
        launch_seconds=round(ours["seconds"], 3),
        peak_rss_mb=ours["peak_rss_mb"],
        rss_before_launch_mb=ours["rss_before_launch_mb"],
        peak_rss_met=ours["peak_rss_mb"] < RSS_GOAL_MB,
        baseline_contacts=options.baseline_contacts,
        baseline_created=baseline_created,
        baseline_seconds=round(baseline_seconds, 3),
        seed_seconds=round(seed_seconds, 2),
        **checks,
    )


def _arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--baseline-contacts", type=int, default=2_000)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)  # campaign id: launch it here
    return parser.parse_args()


def _seed(contacts: int, baseline: int) -> float:
    from django.db import connection

    from campaigns.models import Category

    started = time.perf_counter()
    Category.objects.bulk_create(Category(name=name) for name in ("A", "B", "C", "baseline"))
    with connection.cursor() as cursor:
        cursor.execute(_SEED_CONTACTS, {"contacts": contacts})
        cursor.execute(_SEED_MEMBERSHIPS, {"baseline": baseline})
        cursor.execute("ANALYZE")  # fresh tables: give the planner real statistics
    return time.perf_counter() - started


def _campaign(category_names: list[str]) -> int:
    from campaigns.models import Campaign, Category
    from messaging.models import Device

    device, _ = Device.objects.get_or_create(label="bench")
    campaign = Campaign.objects.create(
        name="bench " + "+".join(category_names),
        message_1_text=TEXT,
        message_2_text="Merci {{ first_name }} !",
        variable_fallbacks=FALLBACKS,
    )
    campaign.categories.set(Category.objects.filter(name__in=category_names))
    campaign.devices.set([device])
    return campaign.pk


def _launch_in_child(campaign_id: int) -> dict:
    """Launch in a fresh process, so that its peak RSS is the launch's and nothing else's."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(campaign_id)], capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise RuntimeError(f"the launching process failed:\n{done.stderr[-3000:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "campaign": campaign_id}


def _child(campaign_id: int) -> None:
    import django

    django.setup()
    from campaigns.launch import campaign_launch
    from campaigns.models import Campaign

    campaign = Campaign.objects.get(pk=campaign_id)
    before = _peak_rss_mb()
    started = time.perf_counter()
    result = campaign_launch(campaign=campaign, allow_multi_day=True)
    seconds = time.perf_counter() - started
    facts = {"created": result.messages_created, "seconds": seconds}
    print(json.dumps({**facts, "rss_before_launch_mb": before, "peak_rss_mb": _peak_rss_mb()}))


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def _legacy_launch(campaign_id: int) -> tuple[int, float]:
    """What the legacy system did: every contact of every category through the ORM, one by one."""
    from campaigns.models import Campaign, WhatsAppStatus
    from campaigns.rendering import render_for_contact
    from messaging.models import Message, MessageKind

    campaign = Campaign.objects.get(pk=campaign_id)
    device_id = campaign.device_ids()[0]
    started, created = time.perf_counter(), 0
    for category in campaign.categories.all():
        for contact in category.contacts.all():
            if contact.opted_out_at or contact.whatsapp_status == WhatsAppStatus.INVALID:
                continue
            if Message.objects.filter(
                campaign=campaign, contact=contact, kind=MessageKind.MESSAGE_1
            ).exists():
                continue
            content = render_for_contact(campaign.message_1_text, contact, campaign.variable_fallbacks)
            Message.objects.create(
                campaign=campaign,
                contact=contact,
                device_id=device_id,
                kind=MessageKind.MESSAGE_1,
                content=content,
            )
            created += 1
    return created, time.perf_counter() - started


def _check(campaign_id: int) -> dict:
    """The launch did the right thing: one message per eligible contact, rendered as Python would."""
    from django.db.models import Count

    from campaigns.models import Contact
    from campaigns.rendering import render_for_contact
    from messaging.models import Message

    messages = Message.objects.filter(campaign_id=campaign_id)
    eligible = (
        Contact.objects.filter(categories__name__in=["A", "B", "C"], opted_out_at__isnull=True)
        .exclude(whatsapp_status="invalid")
        .aggregate(n=Count("id", distinct=True))["n"]
    )
    sample = messages.select_related("contact").order_by("?")[:200]
    rendered = all(m.content == render_for_contact(TEXT, m.contact, FALLBACKS) for m in sample)
    distinct = messages.aggregate(n=Count("contact_id", distinct=True))["n"]
    return {
        "one_per_eligible_contact": distinct == messages.count() == eligible,
        "rendering_matches": rendered,
    }


if __name__ == "__main__":
    main()
