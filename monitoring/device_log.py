"""A device's log: its recent sends (Message 1, Message 2 and test sends), newest first, for the
operator's device page and the admin's link to it.

A send is a message the device tried or took on: sent, failed, in flight or settled by
reconciliation, and every test send (queued ones too, so that the operator sees theirs waiting).
A launched Message 1 still waiting its turn is not a send yet: a campaign of thousands would
bury the log. Phones are masked as in the logs (`phone_mask`); a test send shows the number it
went to, not its contact's.
"""

from django.conf import settings
from django.core.paginator import Page
from django.db.models import QuerySet

from config.logging import phone_mask
from config.paging import EstimatedCountPaginator
from messaging.models import DEVICE_LOG_SENDS, DEVICE_LOG_TIME, Device, Message, MessageKind


def device_sends(device: Device) -> QuerySet[Message]:
    """The device's sends, newest first: by when each went out or failed, else when it is due
    (a queued test send: when it was queued; `next_attempt_at` follows the one clock)."""
    return (
        Message.objects.filter(DEVICE_LOG_SENDS, device=device)
        .select_related("campaign", "contact")
        .annotate(logged_at=DEVICE_LOG_TIME)
        .order_by("-logged_at", "-pk")
    )


def device_log_page(device: Device, number) -> Page:
    """One page of `device_sends`, each row with `to_masked` and `is_test` for the template."""
    page = EstimatedCountPaginator(device_sends(device), settings.OPERATOR_PAGE_SIZE).get_page(number)
    for message in page:
        message.is_test = message.kind == MessageKind.TEST
        message.to_masked = phone_mask(message.phone or message.contact.phone)
    return page
