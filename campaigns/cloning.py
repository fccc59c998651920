"""Cloning a campaign into a new draft: what the operator wrote, none of what happened.

Everything an operator can edit is copied (name marked as a copy, messages, variants,
media, fatigue rules, start time, fallbacks) together with every many-to-many of the
campaign (its categories, and its devices wherever they live), read from the model itself so
that a field added later is cloned too. What a launch or a send wrote (status, launch and
finish times, Wassenger's file ids of uploaded media) is not: the clone is a draft that has
never been launched. An attachment is shared with the original (the same stored file),
never copied: neither campaign may change it in place, an upload always makes a new file.
"""

from __future__ import annotations

from django.db import transaction
from django.utils.translation import gettext as _

from campaigns.models import Campaign

NAME_MAX_LENGTH = Campaign._meta.get_field("name").max_length


def clone_name(name: str) -> str:
    return (_("%(name)s (copy)") % {"name": name})[:NAME_MAX_LENGTH]


@transaction.atomic
def campaign_clone(*, campaign: Campaign, by=None) -> Campaign:
    """A new draft with `campaign`'s content, categories and devices; returns it, saved."""
    copied = {
        field.attname: getattr(campaign, field.attname)
        for field in Campaign._meta.concrete_fields
        if field.editable and not field.primary_key
    }
    copied["name"] = clone_name(campaign.name)
    clone = Campaign.objects.create(**copied, created_by=by if getattr(by, "pk", None) else None)
    for field in Campaign._meta.many_to_many:
        getattr(clone, field.name).set(getattr(campaign, field.name).all())
    return clone


def cloned_message(campaign: Campaign, clone: Campaign) -> str:
    """What the operator is told (admin and operator pages)."""
    return _("Campaign “%(name)s” cloned into the draft “%(clone)s”.") % {
        "name": campaign.name,
        "clone": clone.name,
    }
