"""A test send: Message 1 as a chosen contact would read it, sent to a number the operator types.

It is queued as a message of its own kind (`MessageKind.TEST`, with the typed number) on the
campaign's first device, and the sender loop sends it at the device's next slot, like any
send: paced (its gap, batch pause, daily limit), counted in the device's UTC day as a Message 1,
retried and reconciled like one, shown in the device's log. It leaves first among the device's
due messages (the operator waits for it) and whatever the campaign's status (a draft's, usually);
a campaign's figures, funnel and exports count Message 1 and Message 2 only, never it. The
operator is told when it should leave (`TestSendResult.leaves_at`). Refusals are typed
(`TestSendRefused`): the caller words them, nothing is queued.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from django import forms
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from campaigns.launch_sql import campaign_message_1_variants
from campaigns.models import Campaign, CampaignStatus, Contact
from campaigns.phones import phone_normalize
from campaigns.refusals import CampaignRefused
from campaigns.rendering import SpintaxError, render_for_contact
from config import clock
from config.logging import phone_mask
from messaging import pacing
from messaging.claims import device_policy, device_snapshot, device_state
from messaging.dispatch import sender_enqueue
from messaging.models import Device, Message, MessageKind, MessageStatus

logger = logging.getLogger(__name__)
__test__ = False  # behaviour named after what operators call it, not a test module for pytest


class TestSendRefused(CampaignRefused):
    __test__ = False
    code, http_status = "test_send_refused", 400


@dataclass(frozen=True)
class TestSendResult:
    __test__ = False
    phone: str
    text: str
    device: Device
    message: Message  # the queued test send
    leaves_at: datetime  # when the device's pacing lets it leave (now, if it may send now)


def test_send_text(*, campaign: Campaign, contact: Contact) -> str:
    """Message 1 for `contact`: its own variant once launched, else the first one."""
    if campaign.message_1_template_name:
        raise TestSendRefused(_("A test send needs a text Message 1, not a WhatsApp template."))
    try:
        variants = campaign_message_1_variants(campaign)
    except SpintaxError as error:
        raise TestSendRefused(_("Message 1: %(error)s") % {"error": error}) from error
    launched = Message.objects.filter(campaign=campaign, contact=contact, kind=MessageKind.MESSAGE_1).first()
    if launched is not None:
        return launched.content
    try:
        return render_for_contact(variants[0], contact, campaign.variable_fallbacks)
    except KeyError as missing:
        facts = {"contact": contact, "name": missing.args[0]}
        raise TestSendRefused(
            _("%(contact)s has no {{ %(name)s }} and it has no fallback.") % facts
        ) from None


def campaign_test_send(*, campaign: Campaign, contact: Contact, phone: str, by=None) -> TestSendResult:
    """Queue Message 1 rendered for `contact`, to `phone`, on the campaign's first device."""
    try:
        phone = phone_normalize(phone)
    except ValidationError as error:
        raise TestSendRefused(_("%(phone)s is not a phone number.") % {"phone": phone}) from error
    text = test_send_text(campaign=campaign, contact=contact)
    device = Device.objects.get(pk=campaign.device_ids()[0])
    _refuse_what_would_never_leave(campaign, contact, device)
    with transaction.atomic():
        facts = {"campaign": campaign, "contact": contact, "device": device, "phone": phone}
        message = Message.objects.create(**facts, kind=MessageKind.TEST, content=text, test_key=uuid.uuid4())
        sender_enqueue(device.pk)
    leaves_at = test_send_leaves_at(message)
    _log(campaign, contact, phone, device, f"queued message={message.pk} leaves_at={leaves_at}", by)
    return TestSendResult(phone, text, device, message, leaves_at)


def _refuse_what_would_never_leave(campaign: Campaign, contact: Contact, device: Device) -> None:
    """A test the sender would never send: refused now rather than left waiting."""
    if campaign.status == CampaignStatus.CANCELLED:  # its pending messages are cancelled
        raise TestSendRefused(_("The campaign is cancelled: clone it to test it again."))
    if device.halted_at is not None:  # it would wait until someone resumes the device
        facts = {"device": device, "why": device.halted_reason}
        raise TestSendRefused(_("Device “%(device)s” is halted: %(why)s") % facts)
    if contact.opted_out_at is not None:  # no message of an opted-out contact is ever claimed
        raise TestSendRefused(_("%(contact)s opted out: choose another contact.") % {"contact": contact})


def test_send_leaves_at(message: Message) -> datetime:
    """When the device's pacing lets `message` leave: after the test sends queued before it
    (which leave first, each taking its slot), at the device's gaps, pauses and daily limit."""
    now = clock.now()
    device = device_snapshot(message.device_id, now)
    ahead = Message.objects.filter(
        device_id=message.device_id, kind=MessageKind.TEST, status=MessageStatus.PENDING, pk__lt=message.pk
    ).count()
    policy, state, at = device_policy(device), device_state(device, now), now
    for _ahead in range(ahead + 1):
        at = pacing.pacing_decide(policy=policy, state=state, now=at, kind=pacing.Kind.MESSAGE_1).not_before
        state = pacing.pacing_record_send(policy=policy, state=state, now=at, kind=pacing.Kind.MESSAGE_1)
    return max(at, now)


def _log(campaign: Campaign, contact: Contact, phone: str, device: Device, outcome: str, by) -> None:
    logger.info(
        "test send device=%s campaign=%s contact=%s phone=%s by=%s outcome=%s",
        device.pk,
        campaign.pk,
        contact.pk,
        phone_mask(phone),
        by,
        outcome,
    )


def test_sent_message(result: TestSendResult) -> str:
    """What the operator is told (admin, operator page, command): where, what, and when."""
    facts = {"phone": result.phone, "device": result.device, "text": result.text}
    if result.leaves_at <= clock.now():
        return _("Test queued to %(phone)s from “%(device)s”, leaving now: %(text)s") % facts
    facts["moment"] = result.leaves_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        _("Test queued to %(phone)s from “%(device)s”, leaving at %(moment)s (the device's pacing): %(text)s")
        % facts
    )


class TestSendForm(forms.Form):
    __test__ = False
    """What the admin's and the operator's test send pages ask: whose Message 1, to which number."""

    contact = forms.CharField(
        label=gettext_lazy("Contact"),
        max_length=40,
        help_text=gettext_lazy("The phone of the contact whose Message 1 is sent, as in the contacts list."),
    )
    phone = forms.CharField(
        label=gettext_lazy("Send it to"),
        max_length=40,
        help_text=gettext_lazy("Your own number, any format."),
    )

    def clean_contact(self) -> Contact:
        given = self.cleaned_data["contact"]
        try:
            found = Contact.objects.filter(phone=phone_normalize(given)).first()
        except ValidationError:
            found = None
        if found is None:
            raise forms.ValidationError(_("No contact has the number %(phone)s.") % {"phone": given})
        return found


def test_send_form_run(*, campaign: Campaign, form: TestSendForm, by) -> str | None:
    """Send from a valid form: the success message, or None with the refusal added to the form."""
    try:
        result = campaign_test_send(campaign=campaign, by=by, **form.cleaned_data)
    except CampaignRefused as refusal:
        form.add_error(None, refusal.message)
        return None
    return test_sent_message(result)
