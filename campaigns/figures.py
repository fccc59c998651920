"""A campaign's own figures: its funnel, failures by reason, and progress with an estimated finish.

They belong to the campaign: its pages read them here, and the operator dashboard reads them
here too (for every campaign in progress). Each figure costs a fixed number of queries:
per-campaign counts are one GROUP BY over the messages of the campaigns asked for, and
estimated finishes come from one snapshot of the devices fed to the pacing module's own
estimate (the one launch uses), queue order included.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Exists, OuterRef, Q

from campaigns.models import Campaign, CampaignStatus, Contact, WhatsAppStatus
from config import clock
from messaging import pacing
from messaging.claims import device_policy, device_state, devices_with_sending_facts
from messaging.models import Device, Message, MessageKind, MessageStatus
from webhooks.models import InboundMessage, InboundOutcome

# Campaigns in progress: launched and not finished.
IN_PROGRESS = (CampaignStatus.SENDING, CampaignStatus.PAUSED, CampaignStatus.SCHEDULED)
# Message 1 still to be settled: waiting, being sent, or sent with an outcome to reconcile.
OPEN_STATUSES = (MessageStatus.PENDING, MessageStatus.SENDING, MessageStatus.UNKNOWN)


# --- Per-campaign counts ----------------------------------------------------------------------


@dataclass(frozen=True)
class CampaignCounts:
    """The funnel of one campaign (recipients → … → Message 2 sent) and what is left.

    Each stage counts Message 1s that reached it or a later one: a read message was delivered.
    """

    recipients: int = 0
    sent: int = 0
    delivered: int = 0
    read: int = 0
    replied: int = 0
    message_2_sent: int = 0
    failed: int = 0
    cancelled: int = 0
    open: int = 0  # not settled yet: pending, sending, or an unknown outcome
    late_replies: int = 0  # replies after the window closed: no Message 2, not in `replied`
    as_of: datetime | None = None  # when they were counted, if cached; None: counted just now

    @property
    def settled(self) -> int:
        return self.sent + self.failed + self.cancelled

    def share(self, count: int) -> float:
        """`count` as a percentage of the recipients, for bars and the funnel."""
        return round(100 * count / self.recipients, 1) if self.recipients else 0.0

    @property
    def progress(self) -> float:
        return self.share(self.settled)

    @property
    def share_sent(self) -> float:
        return self.share(self.sent)

    @property
    def share_failed(self) -> float:
        return self.share(self.failed + self.cancelled)

    @property
    def funnel(self) -> list[tuple[str, int, float]]:
        stages = ("recipients", "sent", "delivered", "read", "replied", "message_2_sent")
        return [(stage, getattr(self, stage), self.share(getattr(self, stage))) for stage in stages]


def _stage(condition: Q) -> Count:
    return Count("id", filter=Q(kind=MessageKind.MESSAGE_1) & condition)


_COUNTS = {
    "recipients": _stage(Q()),
    "sent": _stage(Q(sent_at__isnull=False)),
    "delivered": _stage(Q(delivered_at__isnull=False) | Q(read_at__isnull=False)),
    "read": _stage(Q(read_at__isnull=False)),
    "replied": _stage(Q(replied_at__isnull=False)),
    "message_2_sent": Count("id", filter=Q(kind=MessageKind.MESSAGE_2, sent_at__isnull=False)),
    "failed": _stage(Q(status=MessageStatus.FAILED)),
    "cancelled": _stage(Q(status=MessageStatus.CANCELLED)),
    "open": _stage(Q(status__in=OPEN_STATUSES)),
}


def campaign_counts(campaign_ids: Iterable[int]) -> dict[int, CampaignCounts]:
    """Counts of each campaign; a campaign with no message gets zeros.

    Counting reads every message of the campaigns: when that is FIGURES_CACHE_ABOVE messages or
    more, the counts are kept for FIGURES_CACHE_SECONDS and carry their `as_of`, so that a page
    refreshed every few seconds does not count 100,000 rows each time."""
    ids = list(campaign_ids)
    found = cache.get_many([_cache_key(pk) for pk in ids])
    kept = {pk: CampaignCounts(**found[_cache_key(pk)]) for pk in ids if _cache_key(pk) in found}
    cached = {pk: counts for pk, counts in kept.items() if _fresh(counts.as_of)}
    counted = _counts_counted([pk for pk in ids if pk not in cached])
    _counts_keep(counted)
    return {pk: cached.get(pk) or counted[pk] for pk in ids}


def _fresh(as_of: datetime) -> bool:
    """Counted less than FIGURES_CACHE_SECONDS ago, by the one clock (the cache's own expiry
    follows the wall clock, which tests do not move)."""
    return (clock.now() - as_of).total_seconds() < settings.FIGURES_CACHE_SECONDS


def _cache_key(campaign_id: int) -> str:
    return f"campaign-counts:{campaign_id}"


def _counts_keep(counted: dict[int, CampaignCounts]) -> None:
    """Kept when counting them read FIGURES_CACHE_ABOVE messages or more (one large campaign,
    or a page of fifty ordinary ones)."""
    if sum(counts.recipients for counts in counted.values()) < settings.FIGURES_CACHE_ABOVE:
        return
    now = clock.now()
    kept = {_cache_key(pk): {**asdict(counts), "as_of": now} for pk, counts in counted.items()}
    cache.set_many(kept, timeout=settings.FIGURES_CACHE_SECONDS)


def _counts_counted(ids: list[int]) -> dict[int, CampaignCounts]:
    """Counted now, in two queries."""
    if not ids:
        return {}
    rows = Message.objects.filter(campaign_id__in=ids).values("campaign_id").annotate(**_COUNTS)
    late = _late_replies(ids)
    found = {}
    for row in rows:
        pk = row.pop("campaign_id")
        found[pk] = CampaignCounts(**row, late_replies=late.get(pk, 0))
    return {pk: found.get(pk, CampaignCounts()) for pk in ids}


@dataclass(frozen=True)
class VariantFunnel:
    number: int
    text: str  # as written (Message 1's variants freeze at launch, so it is the one sent)
    counts: CampaignCounts


def funnel_by_variant(campaign: Campaign) -> list[VariantFunnel]:
    """The funnel of each variant of Message 1, in variant order: which text gets replies.

    Empty when the campaign has a single text. A Message 2 counts for the variant its
    contact's Message 1 got."""
    from campaigns.launch_sql import campaign_message_1_variants
    from campaigns.rendering import SpintaxError

    try:
        texts = campaign_message_1_variants(campaign)
    except SpintaxError:  # never launched with these: no message carries a variant
        texts = []
    if len(texts) < 2:  # a single text: no message carries a variant, nothing to read
        return []
    message_2_sent = Message.objects.filter(
        campaign_id=OuterRef("campaign_id"),
        contact_id=OuterRef("contact_id"),
        kind=MessageKind.MESSAGE_2,
        sent_at__isnull=False,
    )
    rows = (
        Message.objects.filter(campaign=campaign, kind=MessageKind.MESSAGE_1, variant__isnull=False)
        .annotate(followed_up=Exists(message_2_sent))
        .values("variant")
        .annotate(**_COUNTS | {"message_2_sent": Count("id", filter=Q(followed_up=True))})
        .order_by("variant")
    )
    found = []
    for row in rows:
        number = row.pop("variant")
        found.append(
            VariantFunnel(number, texts[number - 1] if number <= len(texts) else "", CampaignCounts(**row))
        )
    return found


def _late_replies(campaign_ids: list[int]) -> dict[int, int]:
    """Contacts of each campaign who answered only after their window closed."""
    late = InboundMessage.objects.filter(campaign_id__in=campaign_ids, outcome=InboundOutcome.LATE)
    return dict(late.values_list("campaign_id").annotate(count=Count("contact_id", distinct=True)))


def failures_by_reason(campaign: Campaign, *, limit: int = 10) -> list[dict]:
    """The commonest reasons messages of the campaign failed: [{"reason", "count"}]."""
    failed = Message.objects.filter(campaign=campaign, status=MessageStatus.FAILED)
    rows = failed.values("last_error").annotate(count=Count("id")).order_by("-count", "last_error")
    return [{"reason": row["last_error"], "count": row["count"]} for row in rows[:limit]]


# --- Campaigns in progress -------------------------------------------------------------------


@dataclass(frozen=True)
class CampaignProgress:
    campaign: Campaign
    counts: CampaignCounts
    estimated_finish: datetime | None  # None: nothing left, paused, halted device, or no room at all
    # Why there is no estimate: "all_sent", "paused", "halted", "no_allowance"; with one,
    # "warm_up" when a device's young number sends less today; else "".
    note: str


def campaigns_in_progress(*, now: datetime) -> list[CampaignProgress]:
    in_progress = Campaign.objects.filter(status__in=IN_PROGRESS).prefetch_related("devices")
    campaigns = list(in_progress.order_by("pk"))
    counts = campaign_counts(c.pk for c in campaigns)
    finishes = _estimated_finishes(campaigns, counts, now=now)
    return [CampaignProgress(c, counts[c.pk], *finishes[c.pk]) for c in campaigns]


def _estimated_finishes(campaigns, counts, *, now) -> dict[int, tuple[datetime | None, str]]:
    """Per device, campaigns are served in id order (the sender claims the oldest Message 1),
    after every waiting Message 2: each campaign's part on a device ends once the ones
    before it have, and the campaign ends with its last device."""
    open_by_device = _open_by_device([c.pk for c in campaigns if c.status != CampaignStatus.PAUSED])
    device_ids = sorted({device_id for parts in open_by_device.values() for device_id in parts})
    devices = {d.pk: d for d in devices_with_sending_facts(device_ids, now)} if device_ids else {}
    message_2 = _pending_message_2(device_ids)
    ahead: dict[int, int] = defaultdict(int)
    result = {}
    for campaign in campaigns:
        if campaign.status == CampaignStatus.PAUSED:
            result[campaign.pk] = (None, "paused")
            continue
        if not counts[campaign.pk].open:
            result[campaign.pk] = (None, "all_sent")
            continue
        parts = []
        for device_id, count in open_by_device.get(campaign.pk, {}).items():
            ahead[device_id] += count
            waiting_2 = message_2.get(device_id, 0)
            parts.append(_finish(campaign, devices[device_id], ahead[device_id], waiting_2, now))
        result[campaign.pk] = _latest(parts)
    return result


def _latest(parts: list[tuple[datetime | None, str]]) -> tuple[datetime | None, str]:
    """The campaign's finish: its last device's; a device with no estimate says why."""
    for finish, note in parts:
        if finish is None:
            return None, note
    if not parts:
        return None, "all_sent"
    return max(finish for finish, _ in parts), "warm_up" if any(note for _, note in parts) else ""


def _open_by_device(campaign_ids: list[int]) -> dict[int, dict[int, int]]:
    """{campaign: {device: Message 1s not settled yet}}, in one GROUP BY; kept as the counts
    are (FIGURES_CACHE_SECONDS) once they pass FIGURES_CACHE_ABOVE messages in all."""
    key = "open-by-device:" + ",".join(map(str, sorted(campaign_ids)))
    kept = cache.get(key)
    if kept is not None and _fresh(kept["as_of"]):
        return kept["open"]
    found = _open_by_device_counted(campaign_ids)
    if sum(n for parts in found.values() for n in parts.values()) >= settings.FIGURES_CACHE_ABOVE:
        cache.set(key, {"open": found, "as_of": clock.now()}, timeout=settings.FIGURES_CACHE_SECONDS)
    return found


def _open_by_device_counted(campaign_ids: list[int]) -> dict[int, dict[int, int]]:
    rows = (
        Message.objects.filter(
            campaign_id__in=campaign_ids, kind=MessageKind.MESSAGE_1, status__in=OPEN_STATUSES
        )
        .values_list("campaign_id", "device_id")
        .annotate(n=Count("id"))
    )
    found: dict[int, dict[int, int]] = defaultdict(dict)
    for campaign_id, device_id, count in sorted(rows.order_by()):
        found[campaign_id][device_id] = count
    return dict(found)


def _finish(campaign: Campaign, device: Device, message_1: int, message_2: int, now: datetime):
    if device.halted_at is not None:
        return None, "halted"
    start, policy = max(campaign.starts_at or now, now), device_policy(device)
    try:
        finish = pacing.pacing_estimate_finish(
            policy=policy,
            state=device_state(device, now),
            now=start,
            message_1=message_1,
            message_2=message_2,
        )
    except ValueError:  # the device allows no Message 1 at all (a limit of zero)
        return None, "no_allowance"
    return finish, "warm_up" if policy.warming_up(start.date()) else ""


def _pending_message_2(device_ids: list[int]) -> dict[int, int]:
    """Message 2s waiting on each device, of campaigns in progress (the others never send)."""
    in_progress = Campaign.objects.filter(status__in=IN_PROGRESS).values("pk")
    pending = Message.objects.filter(
        campaign_id__in=in_progress,
        device_id__in=device_ids,
        kind=MessageKind.MESSAGE_2,
        status=MessageStatus.PENDING,
    )
    return dict(pending.values_list("device_id").annotate(count=Count("id")))


def campaign_progress(campaign: Campaign, *, now: datetime) -> CampaignProgress | None:
    """One campaign's progress; None unless it is in progress. Its finish depends on the
    campaigns queued before it on its device, so every campaign in progress is estimated."""
    if campaign.status not in IN_PROGRESS:
        return None
    return next((p for p in campaigns_in_progress(now=now) if p.campaign.pk == campaign.pk), None)


# --- Contacts ------------------------------------------------------------------------------------


def contact_totals() -> dict:
    """{"total", "opted_out", "invalid", "by_category": {category id: contacts}, "as_of"}.

    Each is a count over every contact: with FIGURES_CACHE_ABOVE contacts or more they are
    kept for FIGURES_CACHE_SECONDS (`as_of` then says when they were counted; None: just now)."""
    kept = cache.get(CONTACT_TOTALS_KEY)
    if kept is not None and _fresh(kept["as_of"]):
        return kept
    totals = _contact_totals_counted()
    if totals["total"] >= settings.FIGURES_CACHE_ABOVE:
        cache.set(
            CONTACT_TOTALS_KEY, {**totals, "as_of": clock.now()}, timeout=settings.FIGURES_CACHE_SECONDS
        )
    return {**totals, "as_of": None}


CONTACT_TOTALS_KEY = "contact-totals"


def _contact_totals_counted() -> dict:
    totals = Contact.objects.aggregate(
        total=Count("id"),
        opted_out=Count("id", filter=Q(opted_out_at__isnull=False)),
        invalid=Count("id", filter=Q(whatsapp_status=WhatsAppStatus.INVALID)),
    )
    members = Contact.categories.through.objects.values_list("category_id").annotate(n=Count("contact_id"))
    return {**totals, "by_category": dict(members.order_by())}
