"""A device's log: its recent sends (Message 1, Message 2 and test sends), newest first, for the
operator's device page and the admin's link to it.

A send is a message the device tried or took on: sent, failed, in flight or settled by
reconciliation, and every test send (queued ones too, so that the operator sees theirs waiting).
A launched Message 1 still waiting its turn is not a send yet: a campaign of thousands would
bury the log. Phones are masked as in the logs (`phone_mask`); a test send shows the number it
went to, not its contact's.
"""

from django.conf import settings
from django.core.paginator import Page, Paginator
from django.db.models import Q, QuerySet
from django.db.models.functions import Coalesce

from config.logging import phone_mask
from messaging.models import Device, Message, MessageKind


def device_sends(device: Device) -> QuerySet[Message]:
    """The device's sends, newest first: by when each went out or failed, else when it is due
    (a queued test send: when it was queued; `next_attempt_at` follows the one clock)."""
    tried = Q(attempts__gt=0) | Q(sent_at__isnull=False) | Q(failed_at__isnull=False)
    return (
        Message.objects.filter(tried | Q(kind=MessageKind.TEST), device=device)
        .select_related("campaign", "contact")
        .annotate(logged_at=Coalesce("sent_at", "failed_at", "next_attempt_at"))
        .order_by("-logged_at", "-pk")
    )


def device_log_page(device: Device, number) -> Page:
    """One page of `device_sends`, each row with `to_masked` and `is_test` for the template."""
    page = Paginator(device_sends(device), settings.OPERATOR_PAGE_SIZE).get_page(number)
    for message in page:
        message.is_test = message.kind == MessageKind.TEST
        message.to_masked = phone_mask(message.phone or message.contact.phone)
    return page
