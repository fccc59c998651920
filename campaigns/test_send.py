"""A test send: Message 1 as a chosen contact would read it, sent to a number the operator types.

It goes through the campaign's device like any send: under the device's lease (so no sender
sends meanwhile), when the device's pacing allows a send now, counted in the device's UTC day
and recorded as its last send (so the next one waits its gap). It is logged with the device
(`campaigns.test_send`, masked phone) and creates no message row: a campaign's figures never
count it. Refusals are typed (`TestSendRefused`): the caller words them, nothing is sent.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from campaigns.launch_sql import campaign_message_1_variants
from campaigns.media import media_payload
from campaigns.models import Campaign, Contact
from campaigns.phones import phone_normalize
from campaigns.refusals import CampaignRefused
from campaigns.rendering import SpintaxError, render_for_contact
from config import clock
from config.logging import phone_mask
from messaging import pacing, wassenger
from messaging.claims import device_policy, device_snapshot, device_state, quota_give_back, quota_take_again
from messaging.models import Device, Message, MessageKind
from messaging.sending import lease_acquire, lease_release

logger = logging.getLogger(__name__)
__test__ = False  # behaviour named after what operators call it, not a test module for pytest


class TestSendRefused(CampaignRefused):
    __test__ = False
    code, http_status = "test_send_refused", 400


class DeviceBusy(TestSendRefused):
    code, http_status = "device_busy", 409


class NotNow(TestSendRefused):
    """The device's pacing allows no send now; `not_before` says when."""

    code, http_status = "paced", 429


@dataclass(frozen=True)
class TestSendResult:
    __test__ = False
    phone: str
    text: str
    wassenger_id: str
    device: Device


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
    """Send Message 1 rendered for `contact` to `phone`, through the campaign's first device, now."""
    try:
        phone = phone_normalize(phone)
    except ValidationError as error:
        raise TestSendRefused(_("%(phone)s is not a phone number.") % {"phone": phone}) from error
    text = test_send_text(campaign=campaign, contact=contact)
    owner = str(uuid.uuid4())  # a lease owner, as a sender's
    device_id = campaign.device_ids()[0]
    if not lease_acquire(device_id=device_id, owner=owner):
        raise DeviceBusy(
            _("Device “%(device)s” is sending right now: try again in a minute.")
            % {"device": Device.objects.get(pk=device_id)}
        )
    try:
        return _send_paced(campaign, device_id, contact, phone, text, by=by)
    finally:
        lease_release(device_id=device_id, owner=owner)


def _send_paced(
    campaign: Campaign, device_id: int, contact: Contact, phone: str, text: str, *, by
) -> TestSendResult:
    now = clock.now()
    device = device_snapshot(device_id, now)
    policy, state = device_policy(device), device_state(device, now)
    decision = pacing.pacing_decide(policy=policy, state=state, now=now, kind=pacing.Kind.MESSAGE_1)
    if device.halted_at is not None or decision.action != pacing.Action.SEND:
        raise _not_now(device, decision)
    quota_take_again(device_id=device.pk, day=now.date(), kind=MessageKind.MESSAGE_1)
    _record_pacing(
        device, pacing.pacing_record_send(policy=policy, state=state, now=now, kind=pacing.Kind.MESSAGE_1)
    )
    try:
        result = wassenger.send_message(
            phone=phone,
            reference=f"test-{uuid.uuid4()}",
            text=text,
            device=device.wassenger_id,
            media=media_payload(campaign_id=campaign.pk, kind=MessageKind.MESSAGE_1),
        )
    except wassenger.WassengerError as error:
        quota_give_back(device_id=device.pk, day=now.date(), kind=MessageKind.MESSAGE_1)
        _log(campaign, contact, phone, device, f"failed: {error}", by)
        raise TestSendRefused(_("Wassenger refused the test send: %(error)s") % {"error": error}) from error
    _log(campaign, contact, phone, device, f"accepted {result.wassenger_id}", by)
    return TestSendResult(phone, text, result.wassenger_id, device)


def _not_now(device: Device, decision) -> NotNow:
    if device.halted_at is not None:
        return NotNow(
            _("Device “%(device)s” is halted: %(why)s") % {"device": device, "why": device.halted_reason}
        )
    moment = decision.not_before.strftime("%Y-%m-%d %H:%M:%S UTC")
    return NotNow(
        _("Device “%(device)s” may send its next message at %(moment)s (its pacing, or today's limit).")
        % {"device": device, "moment": moment},
        not_before=decision.not_before,
    )


def _record_pacing(device: Device, after: pacing.DeviceState) -> None:
    Device.objects.filter(pk=device.pk).update(
        last_sent_at=after.last_sent_at, sent_in_batch=after.sent_in_batch, paused_until=after.paused_until
    )


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
    """What the operator is told (admin, operator page, command)."""
    facts = {"phone": result.phone, "device": result.device, "text": result.text}
    return _("Test sent to %(phone)s from “%(device)s”: %(text)s") % facts


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
