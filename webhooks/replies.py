"""A contact's reply: opt-out on a stop word, else Message 2 once per Message 1 in its window.

Called by processing with the contact's row locked, so that all inbound events of one
contact run one after the other; the Message 1 rows are locked too, and the unique
(campaign, contact, kind) constraint makes a second Message 2 impossible anyway.
"""

from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError

from campaigns.contacts import contact_opt_out
from campaigns.lifecycle import campaign_share_lock
from campaigns.models import CampaignStatus, Contact
from campaigns.phones import phone_normalize
from campaigns.rendering import render_for_contact
from config import clock
from messaging.dispatch import sender_enqueue
from messaging.models import ACCEPTED_STATUSES, Device, Message, MessageKind, MessageStatus
from messaging.wassenger import payloads
from webhooks.models import InboundOutcome

logger = logging.getLogger(__name__)

# A reply to a campaign that is still going (or paused, to go on later) gets Message 2.
FOLLOW_UP_CAMPAIGN_STATUSES = (CampaignStatus.SENDING, CampaignStatus.PAUSED)
# A reply's time is Wassenger's clock, sent_at is ours: a reply stamped a little before
# Message 1's sent_at is still a reply to it; one written long before is not.
CLOCK_SKEW = timedelta(minutes=5)
# How the reason of an inbound message that reached no contact starts (searchable in the admin).
UNPLACED = "reply not placed:"


# --- Reading the reply ------------------------------------------------------------------------


def contact_phone(item: dict) -> str:
    """The contact of an inbound one-to-one message, in E.164; "" when the payload names no
    one but a number of ours (payloads.inbound_contact_number: the chat's other party)."""
    own = frozenset(Device.objects.exclude(phone="").values_list("phone", flat=True))
    return phone_or_raw(payloads.inbound_contact_number(item, own_numbers=own))


def phone_or_raw(raw: str) -> str:
    """`raw` in E.164, or as given when it is no valid number (it then matches no contact:
    every stored phone is valid E.164)."""
    try:
        return phone_normalize(raw) if raw else ""
    except ValidationError:
        return raw


def unplaced_reason(data: dict, phone: str) -> str:
    """Why an inbound message could not be tied to a contact, for the operator: the event
    keeps it (raw payload and this reason) and can be reprocessed once the contact exists."""
    if phone:
        return f"{UNPLACED} no contact has the number {phone}"
    if lid := payloads.inbound_lid(data):
        return f"{UNPLACED} WhatsApp names the sender only by {lid}, with no phone number"
    return f"{UNPLACED} the message names no number but our own"


def fold(text: str) -> str:
    """Case, accents, surrounding spaces, punctuation and emoji dropped; inner spaces single.

    "  Arrêt ! " → "arret". Only the edges lose punctuation: "stop please" stays itself.
    """
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    # Mn: the accents NFKD split off, and emoji variation selectors.
    kept = "".join(c for c in decomposed if unicodedata.category(c) != "Mn")
    words = " ".join(kept.split())
    start, end = 0, len(words)
    while start < end and _is_edge(words[start]):
        start += 1
    while end > start and _is_edge(words[end - 1]):
        end -= 1
    return words[start:end]


def _is_edge(character: str) -> bool:
    # Punctuation, symbols (emoji), separators and invisible formatting characters.
    return unicodedata.category(character)[0] in "PSZC"


def is_stop_word(text: str) -> bool:
    """The whole reply is a stop word (settings.WEBHOOK_STOP_WORDS), however it is typed.

    A stop word inside a sentence ("don't stop") is not an opt-out: the reply is read as
    an answer and gets Message 2.
    """
    folded = fold(text)
    return bool(folded) and folded in {fold(word) for word in settings.WEBHOOK_STOP_WORDS}


# --- Acting on it -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What Relance did with an inbound message: its outcome (InboundOutcome), the event's
    reason, and the Message 1 it answered or was judged against."""

    outcome: str
    reason: str
    message_1: Message | None = None


def opt_out_record(*, contact: Contact) -> Verdict:
    """A stop word: the contact is opted out, its pending messages cancelled (the contact
    rule, campaigns/contacts.py), and the campaign it answers acknowledges it if it says how."""
    cancelled = contact_opt_out(contact=contact)
    reason = f"stop word: contact {contact.pk} opted out, {cancelled} pending message(s) cancelled"
    answered = _last_message_1(contact)
    if answered is not None and _opt_out_confirm(message_1=answered, contact=contact):
        reason += "; opt-out confirmation queued"
    return Verdict(InboundOutcome.OPT_OUT, reason, answered)


def _opt_out_confirm(*, message_1: Message, contact: Contact) -> bool:
    """Queue the campaign's opt-out confirmation from the number the contact answered, once
    per contact and campaign (a second stop word gets none); True if one is to be sent."""
    campaign = message_1.campaign
    if not campaign.opt_out_confirmation.strip() or campaign.status == CampaignStatus.CANCELLED:
        return False
    fields = _answer_fields(message_1, contact, campaign.opt_out_confirmation, "the opt-out confirmation")
    confirmation, created = Message.objects.get_or_create(
        campaign=campaign, contact=contact, kind=MessageKind.OPT_OUT, defaults=fields
    )
    if created and confirmation.status == MessageStatus.PENDING:
        sender_enqueue(confirmation.device_id)
        return True
    return False


def reply_record(*, contact: Contact, replied_at: datetime) -> Verdict:
    """Mark each Message 1 answered within its window and queue its Message 2."""
    if contact.opted_out_at is not None:
        return Verdict(InboundOutcome.OPTED_OUT, f"contact {contact.pk} opted out: no Message 2")
    answered = list(_unanswered_in_window(contact, replied_at))
    # The campaign may have completed since the query read it: under its share lock, its
    # status is the committed one, and it cannot complete until this Message 2 is in.
    answered = [m for m in answered if campaign_share_lock(m.campaign_id) in FOLLOW_UP_CAMPAIGN_STATUSES]
    if not answered:
        return _why_no_follow_up(contact, replied_at)
    queued = [m for m in answered if _follow_up(message=m, contact=contact, replied_at=replied_at)]
    for device_id in sorted({message.device_id for message in queued}):
        sender_enqueue(device_id)
    ids = ", ".join(str(message.pk) for message in answered)
    paused = all(m.campaign.status == CampaignStatus.PAUSED for m in answered)
    outcome = InboundOutcome.CAMPAIGN_PAUSED if paused else InboundOutcome.MESSAGE_2
    return Verdict(outcome, f"reply to message {ids}: {len(queued)} Message 2 queued", answered[0])


def message_1_in_flight(contact: Contact) -> int | None:
    """The id of a Message 1 to `contact` whose send has no outcome yet (`sending`, or
    `unknown` until reconciled), in a campaign that would follow a reply up; else None.

    A reply can overtake that outcome (the contact answers while we still wait for
    Wassenger's answer, or after it was lost): judged now, it would find no Message 1
    sent and be dropped. Processing waits for the outcome instead.
    """
    in_flight = Message.objects.filter(
        contact=contact,
        kind=MessageKind.MESSAGE_1,
        status__in=(MessageStatus.SENDING, MessageStatus.UNKNOWN),
        campaign__status__in=FOLLOW_UP_CAMPAIGN_STATUSES,
    )
    return in_flight.values_list("pk", flat=True).first()


def _window_start(replied_at: datetime) -> datetime:
    return replied_at - timedelta(hours=settings.REPLY_WINDOW_HOURS)


def _unanswered_in_window(contact: Contact, replied_at: datetime):
    return (
        Message.objects.select_for_update(of=("self",))
        .select_related("campaign")
        .filter(
            contact=contact,
            kind=MessageKind.MESSAGE_1,
            status__in=ACCEPTED_STATUSES,
            replied_at__isnull=True,
            sent_at__gte=_window_start(replied_at),
            sent_at__lte=replied_at + CLOCK_SKEW,
            campaign__status__in=FOLLOW_UP_CAMPAIGN_STATUSES,
        )
        .order_by("pk")
    )


def _follow_up(*, message: Message, contact: Contact, replied_at: datetime) -> bool:
    """Record the reply on Message 1 and create its Message 2; True if one is to be sent."""
    message.replied_at, message.window_expired_at = replied_at, None
    message.save(update_fields=["replied_at", "window_expired_at", "updated_at"])
    follow_up, created = Message.objects.get_or_create(
        campaign=message.campaign,
        contact=contact,
        kind=MessageKind.MESSAGE_2,
        defaults=_answer_fields(message, contact, message.campaign.message_2_text, "Message 2"),
    )
    return created and follow_up.status == MessageStatus.PENDING


def _answer_fields(message: Message, contact: Contact, text: str, what: str) -> dict:
    """A message answering `contact` from the number of its Message 1, `text` rendered."""
    campaign, now = message.campaign, clock.now()
    fields = {"device_id": message.device_id, "next_attempt_at": now, "status": MessageStatus.PENDING}
    try:
        fields["content"] = render_for_contact(text, contact, campaign.variable_fallbacks)
    except KeyError as missing:
        # Never send a blank where a name should be: the operator sees why in the admin.
        fields.update(status=MessageStatus.FAILED, failed_at=now)
        fields["last_error"] = (
            f"{what} uses {{{{ {missing.args[0]} }}}}, which this contact lacks (no fallback)"
        )
    return fields


def _last_message_1(contact: Contact) -> Message | None:
    """The contact's latest Message 1 that went out (the one a reply is judged against)."""
    last = Message.objects.filter(contact=contact, kind=MessageKind.MESSAGE_1).select_related("campaign")
    return last.exclude(sent_at__isnull=True).order_by("-sent_at").first()


def _why_no_follow_up(contact: Contact, replied_at: datetime) -> Verdict:
    """Say why a reply triggered nothing, for the operator reading the event."""
    last = _last_message_1(contact)
    if last is None:
        reason = "reply from a contact with no Message 1 sent: nothing to do"
        return Verdict(InboundOutcome.NOT_A_REPLY, reason)
    if last.replied_at is not None:
        reason = f"message {last.pk} was already answered: Message 2 exists"
        return Verdict(InboundOutcome.ALREADY_ANSWERED, reason, last)
    if last.sent_at > replied_at + CLOCK_SKEW:
        return Verdict(InboundOutcome.NOT_A_REPLY, f"written before message {last.pk} was sent: no Message 2")
    if last.sent_at < _window_start(replied_at):
        hours = settings.REPLY_WINDOW_HOURS
        reason = f"reply after the {hours:g} h window of message {last.pk}: no Message 2"
        return Verdict(InboundOutcome.LATE, reason, last)
    if last.status not in ACCEPTED_STATUSES:
        return Verdict(InboundOutcome.NOT_A_REPLY, f"message {last.pk} is {last.status}: no Message 2", last)
    reason = f"campaign {last.campaign_id} is {last.campaign.status}: no Message 2"
    return Verdict(InboundOutcome.CAMPAIGN_OVER, reason, last)


def windows_expire(*, now: datetime) -> int:
    """Message 1s sent longer ago than the reply window, with no reply: window closed [7.1]."""
    return Message.objects.filter(
        kind=MessageKind.MESSAGE_1,
        sent_at__lt=_window_start(now),
        replied_at__isnull=True,
        window_expired_at__isnull=True,
    ).update(window_expired_at=now, updated_at=now)
