"""Why a campaign request is refused: the typed refusals, and the checks that find them.

Each refusal (`CampaignRefused` and its subclasses) has a machine-readable `code`, an
`http_status` for the API and a human message for the operator; the admin, the operator
pages, the API and the command all show the same one. The checks here look at a campaign
or at a launch preview (campaigns/launch.py) and each return a refusal or None; the quota
refusal is computed with the pace, in launch.py.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from campaigns.models import Campaign, CampaignStatus

if TYPE_CHECKING:
    from campaigns.launch import LaunchPreview


class CampaignRefused(Exception):
    """An operator's request on a campaign that cannot be done: `message` says why, `code`
    says it to programs, and each fact (keyword argument) is also an attribute."""

    code = "refused"
    http_status = 409  # what the API answers

    def __init__(self, message: str, **facts):
        super().__init__(message)
        self.message, self.facts = message, facts
        for name, value in facts.items():
            setattr(self, name, value)

    def as_dict(self) -> dict:
        facts = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in self.facts.items()}
        return {"code": self.code, "detail": self.message, **facts}


class LaunchRefused(CampaignRefused):
    code = "launch_refused"


class AlreadyLaunched(LaunchRefused):
    code = "already_launched"


class NoRecipients(LaunchRefused):
    code, http_status = "no_recipients", 400


class UnknownVariables(LaunchRefused):
    """`variables`: names no recipient has, most likely a typo in the text."""

    code, http_status = "unknown_variable", 400


class MissingVariables(LaunchRefused):
    """`missing`: {variable: recipients without it}, for variables with no fallback."""

    code, http_status = "missing_variables", 400


class TemplateNotPersonalisable(LaunchRefused):
    code, http_status = "template_variables_not_personalisable", 400


class MalformedVariants(LaunchRefused):
    """Message 1's braces make no valid `{a|b}` groups (saved without the editor's check)."""

    code, http_status = "malformed_variants", 400


class DeviceCannotSend(LaunchRefused):
    code = "device_cannot_send"


class NotACampaignDevice(CampaignRefused):
    """Messages asked to move from or to a device the campaign does not use (`devices`)."""

    code, http_status = "not_a_campaign_device", 400


class QuotaExceeded(LaunchRefused):
    """More recipients than the device may still send today; `allow_multi_day` accepts it.

    Facts: recipients, remaining_today, days_needed, estimated_finish.
    """

    code, http_status = "quota_exceeded", 429


class StatusRefused(CampaignRefused):
    """Pause, resume or cancel asked of a campaign whose status does not allow it."""

    code = "invalid_status"


# --- Launch checks (each returns a refusal or None) ----------------------------------------


def status_refusal(campaign: Campaign) -> LaunchRefused | None:
    if campaign.status == CampaignStatus.DRAFT:
        return None
    return AlreadyLaunched(
        _("Campaign “%(name)s” was already launched: it is %(status)s.")
        % {"name": campaign.name, "status": campaign.get_status_display()}
    )


def devices_refusal(campaign: Campaign) -> LaunchRefused | None:
    if campaign.devices.exists():
        return None
    return DeviceCannotSend(
        _("Campaign “%(name)s” has no device: choose the numbers it sends from.") % {"name": campaign.name}
    )


def audience_refusal(preview: LaunchPreview) -> LaunchRefused | None:
    if preview.recipients:
        return None
    if not preview.distinct_contacts:
        return NoRecipients(_("The campaign's categories have no contacts."))
    facts = {"n": preview.distinct_contacts, "out": preview.opted_out, "bad": preview.invalid}
    if preview.recently_messaged or preview.in_other_campaigns:
        facts.update(recent=preview.recently_messaged, days=preview.campaign.fatigue_days)
        facts["busy"] = preview.in_other_campaigns
        return NoRecipients(
            _(
                "None of the %(n)d contacts can receive it: %(out)d opted out, %(bad)d invalid numbers, "
                "%(recent)d messaged in the last %(days)d days, %(busy)d in another campaign in progress."
            )
            % facts
        )
    return NoRecipients(
        _("None of the %(n)d contacts can receive it: %(out)d opted out, %(bad)d invalid numbers.") % facts
    )


def variables_refusal(preview: LaunchPreview) -> LaunchRefused | None:
    if preview.unknown_variables:
        return _unknown_refusal(preview.unknown_variables)
    missing = preview.missing_without_fallback
    return _missing_refusal(missing) if missing else None


def _unknown_refusal(unknown: list[str]) -> UnknownVariables:
    message = ngettext(
        "No recipient has the variable %(names)s: check its spelling, or remove it.",
        "No recipient has the variables %(names)s: check their spelling, or remove them.",
        len(unknown),
    )
    return UnknownVariables(message % {"names": _braced(unknown)}, variables=unknown)


def _missing_refusal(missing: dict[str, int]) -> MissingVariables:
    details = "; ".join(
        ngettext("%(n)d recipient has no %(name)s", "%(n)d recipients have no %(name)s", count)
        % {"n": count, "name": _braced([name])}
        for name, count in missing.items()
    )
    message = _("%(details)s. Set a fallback for it in the campaign, or complete the contacts.")
    return MissingVariables(message % {"details": details}, missing=missing)


def _braced(names) -> str:
    return ", ".join(f"{{{{ {name} }}}}" for name in names)


def template_refusal(names) -> LaunchRefused | None:
    if not names:
        return None
    return TemplateNotPersonalisable(
        _(
            "WhatsApp template variables are sent as written, so %(names)s cannot be "
            "personalised: use fixed values."
        )
        % {"names": _braced(names)}
    )


def variants_refusal(campaign: Campaign) -> LaunchRefused | None:
    """Message 1's variants cannot be read: refused rather than sent with braces in it."""
    from campaigns.launch_sql import campaign_message_1_variants
    from campaigns.rendering import SpintaxError

    try:
        campaign_message_1_variants(campaign)
    except SpintaxError as error:
        return MalformedVariants(_("Message 1: %(error)s") % {"error": error})
    return None
